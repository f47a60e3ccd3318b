/**
 * A Temporal `PayloadCodec` that encrypts every payload (workflow and activity inputs and results:
 * prompts, completions) with AES-256-GCM before it leaves the process, so the Temporal server and
 * its database hold only ciphertext. The client and every worker use it (`scripts/lib/system.ts`);
 * without `SLUICE_PAYLOAD_KEY` there is no codec and payloads are plain JSON.
 *
 * An encrypted payload has `encoding: binary/encrypted` and `encryption-key-id` (the first 8 bytes
 * of the key's SHA-256, hex: identifies the key without revealing it) in its metadata, and
 * `iv (12 bytes) | ciphertext | tag (16 bytes)` as data; the key ID is bound as associated data.
 * The plaintext is the original payload: its metadata as JSON (values base64) behind a 4-byte
 * length, then its data. Rotation: the current key encrypts; the previous key, when configured,
 * still decrypts. A payload that is not encrypted is refused: whoever can write to Temporal (its
 * database, a client without the key, the UI or CLI) cannot feed a worker plaintext inputs,
 * signals or results. So turning the key on for a running deployment needs a drain first, and
 * Schedules created before it must be recreated (docs/security.md). Search attributes do not go
 * through codecs (Temporal indexes them): they stay readable and are not checked here.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import type { Payload, PayloadCodec } from '@temporalio/common';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** Thrown when a payload cannot be decrypted (not encrypted, unknown key ID, tampered or truncated data). */
export class PayloadDecryptionError extends Error {
  override readonly name = 'PayloadDecryptionError';
}

interface Key {
  id: string;
  secret: Buffer;
}

function keyOf(base64: string): Key {
  const secret = Buffer.from(base64, 'base64');
  if (secret.length !== 32) throw new Error('a payload key must be 32 bytes (base64)');
  return { id: createHash('sha256').update(secret).digest('hex').slice(0, 16), secret };
}

function serialise(payload: Payload): Buffer {
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(payload.metadata ?? {})) metadata[k] = Buffer.from(v).toString('base64');
  const head = Buffer.from(JSON.stringify(metadata), 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(head.length);
  return Buffer.concat([length, head, payload.data ?? new Uint8Array()]);
}

function deserialise(plain: Buffer): Payload {
  const length = plain.readUInt32BE(0);
  const metadata: Record<string, Uint8Array> = {};
  for (const [k, v] of Object.entries(JSON.parse(plain.subarray(4, 4 + length).toString('utf8')) as Record<string, string>)) {
    metadata[k] = new Uint8Array(Buffer.from(v, 'base64'));
  }
  return { metadata, data: new Uint8Array(plain.subarray(4 + length)) };
}

export interface PayloadCodecKeys {
  /** Base64 of the 32-byte key that encrypts (and decrypts). */
  current: string;
  /** Base64 of a 32-byte key that only decrypts (the one before a rotation). @default null */
  previous?: string | null;
}

/** The codec over the given keys. */
export function createEncryptionCodec(keys: PayloadCodecKeys): PayloadCodec {
  const current = keyOf(keys.current);
  const byId = new Map<string, Key>([[current.id, current]]);
  if (keys.previous) {
    const previous = keyOf(keys.previous);
    if (!byId.has(previous.id)) byId.set(previous.id, previous);
  }
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();

  return {
    async encode(payloads) {
      return payloads.map((payload) => {
        const iv = randomBytes(IV_BYTES);
        const cipher = createCipheriv('aes-256-gcm', current.secret, iv);
        cipher.setAAD(Buffer.from(current.id, 'utf8'));
        const body = Buffer.concat([cipher.update(serialise(payload)), cipher.final()]);
        return {
          metadata: { encoding: encoder.encode(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: encoder.encode(current.id) },
          data: new Uint8Array(Buffer.concat([iv, body, cipher.getAuthTag()])),
        };
      });
    },
    async decode(payloads) {
      return payloads.map((payload) => {
        const encoding = payload.metadata?.encoding;
        if (!encoding || decoder.decode(encoding) !== ENCRYPTED_ENCODING) {
          throw new PayloadDecryptionError(
            'payload is not encrypted but SLUICE_PAYLOAD_KEY is set: refused (written before the key was set, or by a client without the key); see docs/security.md',
          );
        }
        const idBytes = payload.metadata?.[KEY_ID_METADATA];
        const key = idBytes ? byId.get(decoder.decode(idBytes)) : undefined;
        if (!key) throw new PayloadDecryptionError('payload encrypted with a key that is not configured (SLUICE_PAYLOAD_KEY / SLUICE_PAYLOAD_KEY_PREVIOUS)');
        const data = Buffer.from(payload.data ?? new Uint8Array());
        if (data.length < IV_BYTES + TAG_BYTES) throw new PayloadDecryptionError('encrypted payload is truncated');
        try {
          const decipher = createDecipheriv('aes-256-gcm', key.secret, data.subarray(0, IV_BYTES));
          decipher.setAAD(Buffer.from(key.id, 'utf8'));
          decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
          return deserialise(Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]));
        } catch {
          throw new PayloadDecryptionError('encrypted payload failed authentication (wrong key or tampered data)');
        }
      });
    },
  };
}

/** The codecs for a configuration: none without a payload key. */
export function payloadCodecsFor(config: { payloadKey: string | null; payloadKeyPrevious: string | null }): PayloadCodec[] {
  return config.payloadKey === null ? [] : [createEncryptionCodec({ current: config.payloadKey, previous: config.payloadKeyPrevious })];
}
