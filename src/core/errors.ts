// The one base of edgeward's errors: a message for people and a stable `code` for programs (API
// replies, exit paths, tests). Services subclass it with their own union of codes.

/** An error with a stable machine-readable `code`; `name` is the subclass's name. */
export class EdgewardError<C extends string = string> extends Error {
  readonly code: C;

  constructor(code: C, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A failure of a parser or validator as data: what is wrong, where, and a stable code. */
export interface Issue<C extends string = string> {
  code: C;
  /** the offending field or flag ("match.cidr", "--upstream"); null when the whole input is at fault */
  field: string | null;
  /** one sentence for people; names the field */
  message: string;
}
