import { localFixture, type BackendFixture } from './fixtures.js';
import { glusterfsFixture } from './glusterfs-fixture.js';
import { nfsFixture } from './nfs-fixture.js';

/**
 * Every backend the conformance suite runs against; each fixture's available() decides whether it is
 * skipped. SV_CONFORMANCE_FIXTURES=local,nfs narrows a run to the named fixtures.
 */
export function allFixtures(): BackendFixture[] {
  const all = [localFixture(), nfsFixture(), glusterfsFixture()];
  const wanted = process.env.SV_CONFORMANCE_FIXTURES?.split(',').filter(Boolean);
  return wanted ? all.filter((f) => wanted.includes(f.name)) : all;
}
