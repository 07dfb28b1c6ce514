import assert from 'node:assert/strict';
import {
  isReadOnly,
  mountAt,
  parseMountInfo,
  parseMountInfoLine,
  readMountTable,
} from '../../src/mount/mountinfo.js';

const SAMPLE = [
  '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro',
  '95 22 8:1 /var/lib/vols/pvc-1 /mnt/with\\040space rw,nosuid shared:1 master:2 - ext4 /dev/sda1 rw',
  '96 95 8:1 /var/lib/vols/pvc-1 /mnt/with\\040space ro,relatime - ext4 /dev/sda1 rw',
  '120 22 0:55 / /mnt/gl rw,relatime - fuse.glusterfs 127.0.0.1:/vol1/pvc1 rw,user_id=0,group_id=0',
].join('\n');

describe('mountinfo parser', () => {
  it('parses fields, optional fields and octal escapes', () => {
    const entry = parseMountInfoLine(SAMPLE.split('\n')[1]!);
    assert.equal(entry.mountId, 95);
    assert.equal(entry.parentId, 22);
    assert.equal(entry.root, '/var/lib/vols/pvc-1');
    assert.equal(entry.mountPoint, '/mnt/with space');
    assert.equal(entry.fsType, 'ext4');
    assert.equal(entry.source, '/dev/sda1');
    assert.deepEqual(entry.mountOptions, ['rw', 'nosuid']);
  });

  it('returns the topmost of stacked mounts', () => {
    const top = mountAt(parseMountInfo(SAMPLE), '/mnt/with space');
    assert.equal(top?.mountId, 96);
    assert.equal(isReadOnly(top!), true);
  });

  it('parses FUSE sources', () => {
    const gl = mountAt(parseMountInfo(SAMPLE), '/mnt/gl');
    assert.equal(gl?.fsType, 'fuse.glusterfs');
    assert.equal(gl?.source, '127.0.0.1:/vol1/pvc1');
  });

  it('rejects malformed lines instead of guessing', () => {
    assert.throws(() => parseMountInfoLine('1 2 3'), /malformed/);
  });

  it("reads this process's real mount table", async () => {
    const table = await readMountTable();
    assert.ok(mountAt(table, '/'), 'the root mount is listed');
  });
});
