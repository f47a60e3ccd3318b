/** CSV cells of exports: formula injection neutralised, quoting, numbers left alone. */
import { describe, expect, it } from 'vitest';
import { csvField } from '../../api/csv-export.js';

describe('csvField', () => {
  it("prefixes ' to cells that start with = + - @, tab or CR", () => {
    expect(csvField('=HYPERLINK("http://x","y")')).toBe(`"'=HYPERLINK(""http://x"",""y"")"`);
    expect(csvField('+1+1')).toBe("'+1+1");
    expect(csvField('-2+3')).toBe("'-2+3");
    expect(csvField('@SUM(A1)')).toBe("'@SUM(A1)");
    expect(csvField('\t=1')).toBe("'\t=1");
    expect(csvField('\r=1')).toBe(`"'\r=1"`);
  });

  it('leaves other cells, numbers (negative ones included), booleans and dates as they are', () => {
    expect(csvField('gpt-4o')).toBe('gpt-4o');
    expect(csvField('a=b')).toBe('a=b');
    expect(csvField(-120)).toBe('-120');
    expect(csvField(0)).toBe('0');
    expect(csvField(true)).toBe('true');
    expect(csvField(new Date('2026-07-01T00:00:00Z'))).toBe('2026-07-01T00:00:00.000Z');
    expect(csvField(null)).toBe('');
    expect(csvField(undefined)).toBe('');
  });

  it('quotes commas, quotes and line breaks', () => {
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('two\nlines')).toBe('"two\nlines"');
  });
});
