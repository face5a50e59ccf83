/** The spool's disk is full (ENOSPC, EDQUOT): the caller should answer 452 4.3.1. */
export class SpoolFullError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SpoolFullError";
  }
}

/** Any other failure to store durably: the caller should answer 451 4.3.0. */
export class SpoolWriteError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SpoolWriteError";
  }
}

/** A message file that cannot be read as one (a damaged envelope). */
export class SpoolReadError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SpoolReadError";
  }
}

/** No message with that id. */
export class MessageNotFoundError extends Error {
  constructor(readonly id: string) {
    super(`No message "${id}" in the queue`);
    this.name = "MessageNotFoundError";
  }
}

/** True for an error that means the disk or quota is full. */
export function isDiskFull(error: unknown): boolean {
  const text = error instanceof Error
    ? `${error.name} ${error.message} ${(error as { code?: string }).code ?? ""}`
    : "";
  return /ENOSPC|EDQUOT|No space left|quota exceeded/i.test(text);
}
