import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { ProcessGroup } from './processes.js';

/**
 * openssh-server on a loopback port, with a host key and a user key generated for the test.
 * Log in as root with `userKey`; `knownHosts` is the line a client must trust.
 */

export interface Sshd {
  port: number;
  /** Private key (OpenSSH format) authorised for root. */
  userKey: string;
  /** known_hosts line for the server's real host key. */
  knownHosts: string;
  /** known_hosts line naming this server but another key: a client must refuse it. */
  wrongKnownHosts: string;
  stop(): Promise<void>;
}

const SSHD = '/usr/sbin/sshd';

export function sshdInstalled(): boolean {
  return existsSync(SSHD) && existsSync('/usr/bin/ssh-keygen');
}

export async function startSshd(): Promise<Sshd> {
  const dir = await mkdtemp(join(tmpdir(), 'sv-sshd-'));
  const processes = new ProcessGroup();
  try {
    await mkdir('/run/sshd', { recursive: true });
    for (const name of ['hostkey', 'userkey', 'otherkey']) {
      await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, name)]);
    }
    await writeFile(join(dir, 'authorized_keys'), await readFile(join(dir, 'userkey.pub')), { mode: 0o600 });
    const port = await freePort();
    await writeFile(
      join(dir, 'sshd_config'),
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${join(dir, 'hostkey')}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PermitRootLogin prohibit-password',
        'StrictModes no',
        'UsePAM no',
        '',
      ].join('\n'),
    );
    processes.spawn('sshd', SSHD, ['-D', '-e', '-f', join(dir, 'sshd_config')]);
    await waitForPort(port);
    const hostLine = (name: string) =>
      readFile(join(dir, `${name}.pub`), 'utf8').then(
        (pub) => `[127.0.0.1]:${port} ${pub.trim().split(' ').slice(0, 2).join(' ')}`,
      );
    return {
      port,
      userKey: await readFile(join(dir, 'userkey'), 'utf8'),
      knownHosts: await hostLine('hostkey'),
      wrongKnownHosts: await hostLine('otherkey'),
      stop: async () => {
        await processes.stopAll();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await processes.stopAll();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`sshd did not listen on port ${port}`);
}
