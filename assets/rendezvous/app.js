// The rendezvous page: log in, see your devices, open a WebRTC session to one through the
// signaling WebSocket, send it text and files over data channels. Plain JavaScript, no build, no
// inline script (the page's Content-Security-Policy allows only this file); the session token is
// kept in memory only.
'use strict';

const $ = (id) => document.getElementById(id);
const state = { token: null, ws: null, pc: null, session: null, device: null, text: null, reported: null };
/** a file is sent in chunks of this size, waiting while the channel buffers more than HIGH_WATER */
const CHUNK = 16 * 1024;
const HIGH_WATER = 1024 * 1024;

function log(line) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${line}`;
  $('log').appendChild(li);
  li.scrollIntoView({ block: 'nearest' });
}

function send(frame) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(frame));
}

async function login(ev) {
  ev.preventDefault();
  $('login-error').textContent = '';
  const res = await fetch('/api/v1/rendezvous/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: $('username').value, password: $('password').value }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    $('login-error').textContent = (body.error && body.error.message) || `login failed (${res.status})`;
    return;
  }
  state.token = body.token;
  $('password').value = '';
  $('who').textContent = body.user;
  connectSignal();
}

function connectSignal() {
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/rendezvous/signal`);
  state.ws = ws;
  ws.onopen = () => send({ type: 'hello', role: 'client', session: state.token });
  ws.onmessage = (ev) => onFrame(JSON.parse(ev.data));
  ws.onclose = (ev) => {
    $('login-error').textContent = `signaling closed (${ev.code} ${ev.reason})`;
    $('login-view').hidden = false;
    $('devices-view').hidden = true;
  };
}

function renderDevices(devices) {
  const ul = $('devices');
  ul.replaceChildren();
  for (const d of devices) {
    const li = document.createElement('li');
    li.dataset.device = d.name;
    const name = document.createElement('span');
    name.textContent = `${d.name} `;
    const st = document.createElement('span');
    st.className = d.online ? 'online' : 'offline';
    st.textContent = d.online ? 'online' : 'offline';
    const b = document.createElement('button');
    b.textContent = 'Connect';
    b.disabled = !d.online;
    b.className = 'connect';
    b.addEventListener('click', () => openSession(d.name));
    li.append(name, st, ' ', b);
    ul.appendChild(li);
  }
}

function onFrame(f) {
  switch (f.type) {
    case 'welcome':
      $('login-view').hidden = true;
      $('devices-view').hidden = false;
      send({ type: 'devices' });
      return;
    case 'devices':
      renderDevices(f.devices);
      return;
    case 'presence':
      send({ type: 'devices' });
      return;
    case 'opened':
      startPeer(f);
      return;
    case 'answer':
      if (state.pc && f.session === state.session) state.pc.setRemoteDescription({ type: 'answer', sdp: f.sdp }).catch((e) => log(`answer: ${e.message}`));
      return;
    case 'candidate':
      if (state.pc && f.session === state.session && f.candidate) state.pc.addIceCandidate(f.candidate).catch((e) => log(`candidate: ${e.message}`));
      return;
    case 'closed':
      if (f.session === state.session) {
        log(`session ended: ${f.reason}`);
        $('state').textContent = `ended (${f.reason})`;
        endSession(false);
      }
      return;
    case 'error':
      log(`server: ${f.code}: ${f.message}`);
      return;
  }
}

function openSession(name) {
  state.device = name;
  $('peer-name').textContent = name;
  $('session-view').hidden = false;
  $('state').textContent = 'opening';
  send({ type: 'open', device: name });
}

async function startPeer(f) {
  state.session = f.session;
  const pc = new RTCPeerConnection({ iceServers: f.iceServers, iceTransportPolicy: $('relay-only').checked ? 'relay' : 'all' });
  state.pc = pc;
  pc.onicecandidate = (ev) => send({ type: 'candidate', session: f.session, candidate: ev.candidate ? ev.candidate.toJSON() : null });
  pc.onconnectionstatechange = () => {
    $('state').textContent = pc.connectionState;
    if (pc.connectionState === 'connected') setTimeout(showPath, 200);
  };
  const text = pc.createDataChannel('text');
  state.text = text;
  text.onmessage = (ev) => log(`${state.device}: ${ev.data}`);
  text.onopen = () => log('text channel open');
  await pc.setLocalDescription(await pc.createOffer());
  send({ type: 'offer', session: f.session, sdp: pc.localDescription.sdp });
}

/** The candidate pair in use, from getStats: "relay udp 127.0.0.1:5000 -> host 10.0.0.2:4000". */
async function showPath() {
  if (!state.pc) return;
  const stats = await state.pc.getStats();
  let pair = null;
  stats.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
  });
  if (!pair) {
    stats.forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
    });
  }
  if (!pair) return;
  const l = stats.get(pair.localCandidateId);
  const r = stats.get(pair.remoteCandidateId);
  const relayed = l.candidateType === 'relay' || r.candidateType === 'relay';
  $('path').textContent = `${relayed ? 'relayed' : 'direct'}: ${l.candidateType} ${l.protocol}${l.relayProtocol ? `/${l.relayProtocol}` : ''} -> ${r.candidateType} ${r.address}:${r.port}`;
  $('path').dataset.relayed = String(relayed);
  // the operators' view of the server (GET /api/v1/rendezvous/status) shows it too, once per change
  const end = (c) => ({ type: c.candidateType, address: String(c.address ?? ''), port: c.port ?? 0, protocol: c.protocol === 'tcp' ? 'tcp' : 'udp' });
  const report = { type: 'path', session: state.session, relayed, local: end(l), remote: end(r) };
  if (JSON.stringify(report) !== state.reported) {
    state.reported = JSON.stringify(report);
    send(report);
  }
}

function sendText(ev) {
  ev.preventDefault();
  const t = $('text').value;
  if (!t || !state.text || state.text.readyState !== 'open') return;
  state.text.send(t);
  log(`you: ${t}`);
  $('text').value = '';
}

/** Sends the chosen file over a channel "file": a JSON header, the bytes, "end"; the device answers ok:BYTES. */
async function sendFile(ev) {
  ev.preventDefault();
  const file = $('file').files[0];
  if (!file || !state.pc) return;
  const dc = state.pc.createDataChannel('file');
  dc.bufferedAmountLowThreshold = HIGH_WATER / 4;
  $('progress').value = 0;
  $('file-status').textContent = 'sending';
  dc.onmessage = (m) => {
    if (typeof m.data !== 'string') return;
    if (m.data.startsWith('ok:')) {
      $('file-status').textContent = `saved on ${state.device} (${m.data.slice(3)} bytes)`;
      log(`file ${file.name}: saved on the device`);
    } else if (m.data.startsWith('error:')) {
      $('file-status').textContent = `refused: ${m.data.slice(6)}`;
    }
  };
  await new Promise((resolve) => (dc.onopen = resolve));
  dc.send(JSON.stringify({ name: file.name, size: file.size }));
  for (let at = 0; at < file.size; at += CHUNK) {
    if (dc.bufferedAmount > HIGH_WATER) await new Promise((resolve) => (dc.onbufferedamountlow = resolve));
    dc.send(await file.slice(at, at + CHUNK).arrayBuffer());
    $('progress').value = Math.min(at + CHUNK, file.size) / file.size;
  }
  $('progress').value = 1;
  dc.send('end');
}

function endSession(tell) {
  if (tell && state.session) send({ type: 'close', session: state.session, reason: 'ended in the browser' });
  if (state.pc) state.pc.close();
  state.pc = null;
  state.session = null;
}

$('login-form').addEventListener('submit', login);
$('text-form').addEventListener('submit', sendText);
$('file-form').addEventListener('submit', sendFile);
$('end').addEventListener('click', () => endSession(true));
