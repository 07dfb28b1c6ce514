import { fileURLToPath } from 'node:url';

/**
 * The package's root directory (package.json, proto/). This module runs two levels below it both as
 * compiled (dist/src/) and inside the driver's bundle (dist/bundle/, where every module shares the
 * bundle's import.meta.url), so paths are built from here and not from each caller's own location.
 */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));
