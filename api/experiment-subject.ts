/**
 * The sticky subject of experiment assignment for a request: the body's `user`, else the
 * `X-Sluice-Subject` header (for callers whose experiments are keyed by something other than
 * the end user: an organisation, a session), else the key. Never sent upstream; erased with the
 * tenant's content (docs/security.md).
 */
import type { Request } from 'express';
import { badRequest } from './errors.js';

export const SUBJECT_HEADER = 'X-Sluice-Subject';
/** The longest subject header, in characters (as a `user`). */
const MAX_SUBJECT = 256;

/** The subject (see the top of this file); a malformed header is a 400 naming it, before anything is written. */
export function experimentSubject(req: Request, user: string | null, keyId: string): string {
  const header = req.get(SUBJECT_HEADER);
  if (header !== undefined && (header.trim() === '' || header.length > MAX_SUBJECT || /[^\x20-\x7e]/.test(header))) {
    throw badRequest(`${SUBJECT_HEADER} must be 1 to ${MAX_SUBJECT} printable ASCII characters`, SUBJECT_HEADER, 'invalid_value');
  }
  return user ?? header ?? keyId;
}
