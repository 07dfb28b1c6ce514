import { aborted } from './errors.js';

/**
 * Per-volume operation locks. The CSI spec asks for ABORTED when an operation for the same volume is
 * already in flight, so this never waits: it either takes the key or throws.
 */
export class VolumeLocks {
  private readonly held = new Set<string>();

  acquire(key: string): () => void {
    if (this.held.has(key)) throw aborted(`an operation for volume "${key}" is already in progress`);
    this.held.add(key);
    return () => this.held.delete(key);
  }

  get size(): number {
    return this.held.size;
  }
}
