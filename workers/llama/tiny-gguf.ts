/**
 * A deterministic generator of a tiny llama-architecture GGUF model for tests and benchmarks.
 *
 * The model has random (seeded) weights, so it produces gibberish, but it loads in llama.cpp,
 * tokenizes with a real SentencePiece-style vocabulary (byte fallback plus a few hundred `▁word`
 * pieces) and generates quickly on a CPU. The same options always produce the same bytes.
 *
 * Layout (GGUF v3, little-endian): header, metadata, tensor infos, padding, tensor data with each
 * tensor aligned to {@link ALIGNMENT}. Tensors are F32, or with `quantization: 'q8_0'` the weight
 * matrices are Q8_0 (a bench-size model then stays ~1.06 bytes a weight on disk).
 *
 * Why one file of ~440 lines: it is one format writer (the GGUF layout, its value types, the
 * vocabulary and the tensors it needs), read top to bottom against the format; split, each part
 * would need the others' offsets and type ids.
 */
import { randomBytes } from 'node:crypto';
import { access, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Options of the generated model. Every field changes the bytes written. */
export interface TinyGgufOptions {
  /**
   * Seed of the weight generator.
   * @default 42
   */
  seed?: number;
  /**
   * Size of the hidden state (E).
   * @default 64
   */
  embeddingLength?: number;
  /**
   * Number of transformer blocks.
   * @default 2
   */
  blockCount?: number;
  /**
   * Attention heads; must divide `embeddingLength`.
   * @default 4
   */
  headCount?: number;
  /**
   * Key/value heads (grouped-query attention); must divide `headCount`.
   * @default 4
   */
  headCountKv?: number;
  /**
   * Hidden size of the feed-forward network (F).
   * @default 128
   */
  feedForwardLength?: number;
  /**
   * Context length the model claims to be trained on (`llama.context_length`).
   * @default 2048
   */
  contextLength?: number;
  /**
   * Standard deviation of the normally distributed weights (norm weights are always 1.0).
   * @default 0.02
   */
  weightStd?: number;
  /**
   * Words added to the vocabulary as `▁word` pieces, together with every prefix needed for the
   * SentencePiece merges to reach them.
   * @default DEFAULT_WORDS (about 200 common English words)
   */
  words?: readonly string[];
  /**
   * A Jinja chat template stored as `tokenizer.chat_template`, or `null` for a model without one.
   * @default null
   */
  chatTemplate?: string | null;
  /**
   * `general.name`.
   * @default 'sluice-tiny'
   */
  name?: string;
  /**
   * Storage of the weight matrices: `f32`, or `q8_0` (blocks of 32 int8 with an f16 scale, as
   * llama.cpp's Q8_0; needs every matrix's inner dimension to be a multiple of 32). Norm vectors
   * stay F32.
   * @default 'f32'
   */
  quantization?: 'f32' | 'q8_0';
}

/** File name used by {@link ensureTinyGguf}. */
export const TINY_GGUF_FILE_NAME = 'sluice-tiny.gguf';

/** Alignment of the tensor data (`general.alignment`). */
export const ALIGNMENT = 32;

/** The word list used when {@link TinyGgufOptions.words} is not given. */
export const DEFAULT_WORDS: readonly string[] = (
  'the of and to in is you that it he was for on are as with his they at be this have from or one ' +
  'had by word but not what all were we when your can said there use an each which she do how their ' +
  'if will up other about out many then them these so some her would make like him into time has look ' +
  'two more write go see number no way could people my than first water been call who oil its now find ' +
  'long down day did get come made may part over new sound take only little work know place year live ' +
  'me back give most very after thing our just name good sentence man think say great where help through ' +
  'much before line right too mean old any same tell boy follow came want show also around form three ' +
  'small set put end does another well large must big even such because turn here why ask went men read ' +
  'need land different home us move try kind hand picture again change off play spell air away animal ' +
  'house point page letter mother answer found study still learn should world hello model token request ' +
  'queue worker durable sluice'
).split(' ');

/** Resolved options: every field present. */
type ResolvedOptions = Required<TinyGgufOptions>;

/** Token types of `tokenizer.ggml.token_type`. */
const TokenType = { normal: 1, unknown: 2, control: 3, byte: 6 } as const;

/** GGUF metadata value type ids. */
const ValueType = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 } as const;

/** GGUF tensor type ids of F32 and Q8_0. */
const GGML_TYPE_F32 = 0;
const GGML_TYPE_Q8_0 = 8;
/** Weights per Q8_0 block (an f16 scale, then this many int8). */
const Q8_0_BLOCK = 32;

/** `value` as IEEE 754 half-precision bits (round to nearest even; no NaN in weights). */
function toFloat16Bits(value: number): number {
  const f32 = new Float32Array([value]);
  const bits = new Uint32Array(f32.buffer)[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = ((bits >>> 23) & 0xff) - 127 + 15;
  const mantissa = bits & 0x7fffff;
  if (exponent >= 0x1f) return sign | 0x7c00;
  if (exponent <= 0) {
    if (exponent < -10) return sign;
    const m = (mantissa | 0x800000) >>> (1 - exponent);
    return sign | ((m + 0x1000 + ((m >>> 13) & 1) - 1) >>> 13);
  }
  const rounded = mantissa + 0xfff + ((mantissa >>> 13) & 1);
  if (rounded & 0x800000) return exponent + 1 >= 0x1f ? sign | 0x7c00 : sign | ((exponent + 1) << 10);
  return sign | (exponent << 10) | (rounded >>> 13);
}

/** The f16 value of half-precision `bits` (to quantize against the scale llama.cpp will read). */
function fromFloat16Bits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** `data` as Q8_0 blocks: per 32 values, the f16 scale max|x|/127, then round(x / scale) as int8. */
function quantizeQ8_0(data: Float32Array): Buffer {
  const blocks = data.length / Q8_0_BLOCK;
  const out = Buffer.alloc(blocks * (2 + Q8_0_BLOCK));
  for (let b = 0; b < blocks; b++) {
    let max = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) max = Math.max(max, Math.abs(data[b * Q8_0_BLOCK + i]!));
    const bits = toFloat16Bits(max / 127);
    const scale = fromFloat16Bits(bits);
    const at = b * (2 + Q8_0_BLOCK);
    out.writeUInt16LE(bits, at);
    for (let i = 0; i < Q8_0_BLOCK; i++) {
      const q = scale === 0 ? 0 : Math.round(data[b * Q8_0_BLOCK + i]! / scale);
      out.writeInt8(Math.max(-127, Math.min(127, q)), at + 2 + i);
    }
  }
  return out;
}

/** A metadata value, tagged with its GGUF type. */
type MetadataValue =
  | { type: 'u32'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'strings'; value: readonly string[] }
  | { type: 'f32s'; value: readonly number[] }
  | { type: 'i32s'; value: readonly number[] };

/** A tensor to write: its name, dims (innermost first) and data. */
interface TensorSpec {
  name: string;
  dims: readonly number[];
  data: Float32Array;
}

/** The tokenizer vocabulary as three parallel arrays. */
interface Vocab {
  tokens: string[];
  scores: number[];
  types: number[];
}

/** Applies the defaults and checks the shape constraints. */
function resolveOptions(options: TinyGgufOptions): ResolvedOptions {
  const resolved: ResolvedOptions = {
    seed: options.seed ?? 42,
    embeddingLength: options.embeddingLength ?? 64,
    blockCount: options.blockCount ?? 2,
    headCount: options.headCount ?? 4,
    headCountKv: options.headCountKv ?? 4,
    feedForwardLength: options.feedForwardLength ?? 128,
    contextLength: options.contextLength ?? 2048,
    weightStd: options.weightStd ?? 0.02,
    words: options.words ?? DEFAULT_WORDS,
    chatTemplate: options.chatTemplate ?? null,
    name: options.name ?? 'sluice-tiny',
    quantization: options.quantization ?? 'f32',
  };
  if (resolved.embeddingLength % resolved.headCount !== 0) {
    throw new Error('embeddingLength must be a multiple of headCount');
  }
  if (resolved.headCount % resolved.headCountKv !== 0) {
    throw new Error('headCount must be a multiple of headCountKv');
  }
  return resolved;
}

/**
 * Builds the vocabulary: `<unk>`, `<s>`, `</s>`, the 256 byte tokens, `▁` and the lowercase
 * letters, then every prefix of every `▁word` (SentencePiece merges only pairs whose concatenation
 * is a piece, so each word needs its prefixes). Longer pieces get higher scores so they win merges.
 */
function buildVocab(words: readonly string[]): Vocab {
  const vocab: Vocab = { tokens: [], scores: [], types: [] };
  const add = (token: string, score: number, type: number): void => {
    vocab.tokens.push(token);
    vocab.scores.push(score);
    vocab.types.push(type);
  };
  add('<unk>', 0, TokenType.unknown);
  add('<s>', 0, TokenType.control);
  add('</s>', 0, TokenType.control);
  for (let byte = 0; byte < 256; byte++) {
    add(`<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`, 0, TokenType.byte);
  }
  const pieces = new Set<string>(['▁', ...'abcdefghijklmnopqrstuvwxyz']);
  for (const word of words) {
    const piece = `▁${word}`;
    for (let end = 2; end <= piece.length; end++) pieces.add(piece.slice(0, end));
  }
  for (const piece of pieces) add(piece, -1000 + piece.length, TokenType.normal);
  return vocab;
}

/** A seeded PRNG (mulberry32) returning floats in [0, 1). */
function createUniform(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seeded generator of normally distributed numbers (Box–Muller over {@link createUniform}). */
function createNormal(seed: number, std: number): () => number {
  const uniform = createUniform(seed);
  return () => {
    const u1 = 1 - uniform();
    const u2 = uniform();
    return std * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  };
}

/** Builds every tensor of the model, in file order, drawing weights from one seeded stream. */
function buildTensors(options: ResolvedOptions, vocabSize: number): TensorSpec[] {
  const { embeddingLength: e, feedForwardLength: f, blockCount, headCount, headCountKv } = options;
  const kvLength = (e * headCountKv) / headCount;
  const normal = createNormal(options.seed, options.weightStd);
  const random = (name: string, dims: number[]): TensorSpec => {
    const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = normal();
    return { name, dims, data };
  };
  const ones = (name: string, length: number): TensorSpec => ({
    name,
    dims: [length],
    data: new Float32Array(length).fill(1),
  });
  const tensors: TensorSpec[] = [
    random('token_embd.weight', [e, vocabSize]),
    ones('output_norm.weight', e),
    random('output.weight', [e, vocabSize]),
  ];
  for (let i = 0; i < blockCount; i++) {
    tensors.push(
      ones(`blk.${i}.attn_norm.weight`, e),
      random(`blk.${i}.attn_q.weight`, [e, e]),
      random(`blk.${i}.attn_k.weight`, [e, kvLength]),
      random(`blk.${i}.attn_v.weight`, [e, kvLength]),
      random(`blk.${i}.attn_output.weight`, [e, e]),
      ones(`blk.${i}.ffn_norm.weight`, e),
      random(`blk.${i}.ffn_gate.weight`, [e, f]),
      random(`blk.${i}.ffn_up.weight`, [e, f]),
      random(`blk.${i}.ffn_down.weight`, [f, e]),
    );
  }
  return tensors;
}

/** The metadata key/values, in file order. */
function buildMetadata(options: ResolvedOptions, vocab: Vocab): [string, MetadataValue][] {
  const u32 = (value: number): MetadataValue => ({ type: 'u32', value });
  const metadata: [string, MetadataValue][] = [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.name', { type: 'string', value: options.name }],
    ['general.alignment', u32(ALIGNMENT)],
    ['llama.context_length', u32(options.contextLength)],
    ['llama.embedding_length', u32(options.embeddingLength)],
    ['llama.block_count', u32(options.blockCount)],
    ['llama.feed_forward_length', u32(options.feedForwardLength)],
    ['llama.attention.head_count', u32(options.headCount)],
    ['llama.attention.head_count_kv', u32(options.headCountKv)],
    ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-5 }],
    ['llama.rope.dimension_count', u32(options.embeddingLength / options.headCount)],
    ['llama.vocab_size', u32(vocab.tokens.length)],
    ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: 'strings', value: vocab.tokens }],
    ['tokenizer.ggml.scores', { type: 'f32s', value: vocab.scores }],
    ['tokenizer.ggml.token_type', { type: 'i32s', value: vocab.types }],
    ['tokenizer.ggml.unknown_token_id', u32(0)],
    ['tokenizer.ggml.bos_token_id', u32(1)],
    ['tokenizer.ggml.eos_token_id', u32(2)],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: true }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: false }],
  ];
  if (options.chatTemplate !== null) {
    metadata.push(['tokenizer.chat_template', { type: 'string', value: options.chatTemplate }]);
  }
  return metadata;
}

/** An append-only little-endian byte writer. */
class ByteWriter {
  private readonly chunks: Buffer[] = [];
  private size = 0;

  /** Bytes written so far. */
  get length(): number {
    return this.size;
  }

  bytes(buffer: Buffer): void {
    this.chunks.push(buffer);
    this.size += buffer.length;
  }

  u32(value: number): void {
    const buffer = Buffer.alloc(4);
    buffer.writeUInt32LE(value);
    this.bytes(buffer);
  }

  i32(value: number): void {
    const buffer = Buffer.alloc(4);
    buffer.writeInt32LE(value);
    this.bytes(buffer);
  }

  u64(value: number): void {
    const buffer = Buffer.alloc(8);
    buffer.writeBigUInt64LE(BigInt(value));
    this.bytes(buffer);
  }

  f32(value: number): void {
    const buffer = Buffer.alloc(4);
    buffer.writeFloatLE(value);
    this.bytes(buffer);
  }

  /** A GGUF string: u64 byte length, then UTF-8 bytes. */
  string(value: string): void {
    const encoded = Buffer.from(value, 'utf8');
    this.u64(encoded.length);
    this.bytes(encoded);
  }

  /** Zero bytes up to the next multiple of `alignment`. */
  pad(alignment: number): void {
    const padding = (alignment - (this.size % alignment)) % alignment;
    if (padding > 0) this.bytes(Buffer.alloc(padding));
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.chunks, this.size);
  }
}

/** Writes one metadata value with its type id (the key is written by the caller). */
function writeMetadataValue(writer: ByteWriter, entry: MetadataValue): void {
  const array = (elementType: number, count: number): void => {
    writer.u32(ValueType.array);
    writer.u32(elementType);
    writer.u64(count);
  };
  switch (entry.type) {
    case 'u32':
      writer.u32(ValueType.u32);
      writer.u32(entry.value);
      return;
    case 'f32':
      writer.u32(ValueType.f32);
      writer.f32(entry.value);
      return;
    case 'bool':
      writer.u32(ValueType.bool);
      writer.bytes(Buffer.from([entry.value ? 1 : 0]));
      return;
    case 'string':
      writer.u32(ValueType.string);
      writer.string(entry.value);
      return;
    case 'strings':
      array(ValueType.string, entry.value.length);
      for (const value of entry.value) writer.string(value);
      return;
    case 'f32s':
      array(ValueType.f32, entry.value.length);
      for (const value of entry.value) writer.f32(value);
      return;
    case 'i32s':
      array(ValueType.i32, entry.value.length);
      for (const value of entry.value) writer.i32(value);
      return;
  }
}

/** Rounds `offset` up to a multiple of {@link ALIGNMENT}. */
function align(offset: number): number {
  return Math.ceil(offset / ALIGNMENT) * ALIGNMENT;
}

/** Serialises a whole GGUF file: header, metadata, tensor infos, padding, aligned tensor data. */
function encodeGguf(metadata: [string, MetadataValue][], tensors: TensorSpec[], quantization: 'f32' | 'q8_0'): Buffer {
  const quantized = (tensor: TensorSpec) => quantization === 'q8_0' && tensor.dims.length === 2;
  const encoded = tensors.map((tensor) => {
    if (quantized(tensor)) {
      if (tensor.dims[0]! % Q8_0_BLOCK !== 0) throw new Error(`${tensor.name}: inner dimension ${tensor.dims[0]} is not a multiple of ${Q8_0_BLOCK} (Q8_0)`);
      return { type: GGML_TYPE_Q8_0, bytes: quantizeQ8_0(tensor.data) };
    }
    const bytes = Buffer.alloc(tensor.data.length * 4);
    tensor.data.forEach((value, index) => bytes.writeFloatLE(value, index * 4));
    return { type: GGML_TYPE_F32, bytes };
  });
  const writer = new ByteWriter();
  writer.bytes(Buffer.from('GGUF', 'ascii'));
  writer.u32(3);
  writer.u64(tensors.length);
  writer.u64(metadata.length);
  for (const [key, value] of metadata) {
    writer.string(key);
    writeMetadataValue(writer, value);
  }
  let offset = 0;
  tensors.forEach((tensor, i) => {
    writer.string(tensor.name);
    writer.u32(tensor.dims.length);
    for (const dim of tensor.dims) writer.u64(dim);
    writer.u32(encoded[i]!.type);
    writer.u64(offset);
    offset = align(offset + encoded[i]!.bytes.length);
  });
  writer.pad(ALIGNMENT);
  for (const { bytes } of encoded) {
    writer.bytes(bytes);
    writer.pad(ALIGNMENT);
  }
  return writer.toBuffer();
}

/** Builds the complete file contents for the given options. */
export function encodeTinyGguf(options: TinyGgufOptions = {}): Buffer {
  const resolved = resolveOptions(options);
  const vocab = buildVocab(resolved.words);
  return encodeGguf(buildMetadata(resolved, vocab), buildTensors(resolved, vocab.tokens.length), resolved.quantization);
}

/**
 * Writes the tiny model to `path`, atomically: the bytes go to a temporary sibling file that is
 * then renamed, so a crash never leaves a half-written model behind.
 */
export async function writeTinyGguf(path: string, options: TinyGgufOptions = {}): Promise<void> {
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(temporary, encodeTinyGguf(options));
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

/** Returns `<dir>/sluice-tiny.gguf` (default options), creating the directory and file if missing. */
export async function ensureTinyGguf(dir: string): Promise<string> {
  const path = join(dir, TINY_GGUF_FILE_NAME);
  try {
    await access(path);
  } catch {
    await mkdir(dir, { recursive: true });
    await writeTinyGguf(path);
  }
  return path;
}

/** File name used by {@link ensureBenchGguf}. */
export const BENCH_GGUF_FILE_NAME = 'sluice-bench-100m.gguf';

/**
 * The bench-size model (issue 18): the same random llama architecture at ~100M parameters (E 768,
 * 14 blocks, 12 heads, FFN 2048), Q8_0, ~106 MB on disk, so batched decoding has real matrix work
 * to share. Generated on demand (a few seconds), never committed.
 */
export const BENCH_GGUF_OPTIONS: TinyGgufOptions = Object.freeze({
  embeddingLength: 768, blockCount: 14, headCount: 12, headCountKv: 12, feedForwardLength: 2048,
  quantization: 'q8_0', name: 'sluice-bench-100m',
});

/** Returns `<dir>/sluice-bench-100m.gguf`, creating it if missing (see {@link BENCH_GGUF_OPTIONS}). */
export async function ensureBenchGguf(dir: string): Promise<string> {
  const path = join(dir, BENCH_GGUF_FILE_NAME);
  try {
    await access(path);
  } catch {
    await mkdir(dir, { recursive: true });
    await writeTinyGguf(path, BENCH_GGUF_OPTIONS);
  }
  return path;
}
