import assert from 'node:assert/strict';
import { formatBytes, formatFields, formatTable, parseSize } from '../../src/cli/format.js';

describe('cli/format', () => {
  describe('parseSize', () => {
    it('reads plain bytes', () => {
      assert.equal(parseSize('0'), 0);
      assert.equal(parseSize('1073741824'), 1073741824);
    });

    it('reads binary suffixes as powers of 1024', () => {
      assert.equal(parseSize('1Ki'), 1024);
      assert.equal(parseSize('512Mi'), 512 * 1024 ** 2);
      assert.equal(parseSize('1Gi'), 1024 ** 3);
      assert.equal(parseSize('2Ti'), 2 * 1024 ** 4);
    });

    it('reads decimal suffixes as powers of 1000', () => {
      assert.equal(parseSize('1k'), 1000);
      assert.equal(parseSize('1K'), 1000);
      assert.equal(parseSize('500M'), 500e6);
      assert.equal(parseSize('10G'), 10e9);
      assert.equal(parseSize('1T'), 1e12);
    });

    it('rounds fractions up to whole bytes', () => {
      assert.equal(parseSize('1.5Gi'), 1.5 * 1024 ** 3);
      assert.equal(parseSize('0.001Ki'), 2);
    });

    it('rejects garbage with a message naming the input and the accepted forms', () => {
      for (const bad of ['', 'lots', '1Zi', '-1Gi', '1 Gi', '1gi', '1GiB', 'Gi', '1e9', '0x10', '1.Gi']) {
        assert.throws(
          () => parseSize(bad),
          /invalid size ".*": use bytes or a number with a suffix Ki, Mi, Gi, Ti/,
          bad,
        );
      }
    });

    it('rejects sizes a JavaScript number cannot hold exactly', () => {
      assert.throws(() => parseSize('99999999Ti'), /too large/);
    });
  });

  describe('formatBytes', () => {
    it('uses the largest binary unit with at most one decimal', () => {
      assert.equal(formatBytes(0), '0 B');
      assert.equal(formatBytes(1000), '1000 B');
      assert.equal(formatBytes(1024), '1 KiB');
      assert.equal(formatBytes(1.5 * 1024 ** 3), '1.5 GiB');
      assert.equal(formatBytes(3 * 1024 ** 4), '3 TiB');
    });

    it('accepts int64 decimal strings as gRPC delivers them', () => {
      assert.equal(formatBytes('1073741824'), '1 GiB');
    });

    it('moves to the next unit when rounding reaches 1024', () => {
      assert.equal(formatBytes(1024 ** 2 - 1), '1 MiB');
    });

    it('round-trips what parseSize reads', () => {
      for (const size of ['1Ki', '512Mi', '1Gi', '2Ti']) {
        assert.equal(formatBytes(parseSize(size)), size.replace(/(\d+)(\w)i/, '$1 $2iB'));
      }
    });
  });

  describe('formatTable', () => {
    it('pads every column but the last to its widest cell', () => {
      const table = formatTable(
        ['ID', 'CAPACITY', 'CONTEXT'],
        [
          ['local/a', '1 GiB', '-'],
          ['local/longer', '512 MiB', 'k=v'],
        ],
      );
      assert.equal(
        table,
        ['ID            CAPACITY  CONTEXT', 'local/a       1 GiB     -', 'local/longer  512 MiB   k=v'].join(
          '\n',
        ),
      );
    });

    it('prints only the header for no rows', () => {
      assert.equal(formatTable(['A', 'B'], []), 'A  B');
    });
  });

  describe('formatFields', () => {
    it('aligns the values after the longest label', () => {
      assert.equal(
        formatFields([
          ['volume', 'local/a'],
          ['capacity', '1 GiB'],
        ]),
        'volume:    local/a\ncapacity:  1 GiB',
      );
    });
  });
});
