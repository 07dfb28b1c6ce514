/**
 * The populator's command-line settings. Kept apart from runtime.ts so that the CLI can declare its
 * flags without loading the populator, its sources and their SDKs (over 10 MiB) when it is off.
 */
export interface PopulatorFlags {
  /** Loopback host:port for `svctl sync`; undefined: none. */
  adminAddress?: string;
  /** host:port of the webhook listener; undefined: none. */
  webhookAddress?: string;
  webhookSecretFile?: string;
  /** How long a sync lease lasts unrenewed (--sync-lease). */
  leaseDurationMs?: number;
}

export const DEFAULT_ADMIN_ADDRESS = '127.0.0.1:9810';
