/**
 * A value from outside refused by a pure rule: the message is for the client, `param` names the
 * field as the client wrote it, `code` is stable. The API answers it as a 400
 * `invalid_request_error` (`api/errors.ts`); a batch line's error file carries the same fields.
 */
export class InvalidRequestError extends Error {
  override readonly name: string = 'InvalidRequestError';
  constructor(
    message: string,
    readonly param: string | null,
    readonly code: string,
  ) {
    super(message);
  }
}
