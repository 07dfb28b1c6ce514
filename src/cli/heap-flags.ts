import { setFlagsFromString } from 'node:v8';

// A small young generation keeps the driver's resident memory flat under load; imported first so it
// applies before the heap grows. Scavenges get more frequent but stay cheap for this allocation pattern.
setFlagsFromString('--max-semi-space-size=2');
