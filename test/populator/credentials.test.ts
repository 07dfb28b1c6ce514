import assert from 'node:assert/strict';
import { credentialsFromSecret, scrubSecrets } from '../../src/populator/credentials.js';
import { SyncError } from '../../src/populator/errors.js';

describe('populator credentials', () => {
  it('reads the documented Secret keys per source', () => {
    assert.deepEqual(
      credentialsFromSecret('git', {
        username: 'bot',
        token: Buffer.from('t0ken'),
        'ssh-privatekey': 'KEY',
        known_hosts: 'host ssh-ed25519 AAA',
        accessKeyId: 'ignored for git',
      }),
      { username: 'bot', token: 't0ken', sshPrivateKey: 'KEY', knownHosts: 'host ssh-ed25519 AAA' },
    );
    assert.deepEqual(
      credentialsFromSecret('s3', { accessKeyId: 'AK', secretAccessKey: 'SK', sessionToken: 'ST' }),
      {
        accessKeyId: 'AK',
        secretAccessKey: 'SK',
        sessionToken: 'ST',
      },
    );
    assert.deepEqual(credentialsFromSecret('http', { token: 'abc', password: '' }), { token: 'abc' });
  });

  it('refuses half an S3 key pair', () => {
    assert.throws(
      () => credentialsFromSecret('s3', { accessKeyId: 'AK' }),
      (err: unknown) => err instanceof SyncError && err.reason === 'auth',
    );
  });

  it('scrubs every secret value from a message', () => {
    const creds = { username: 'bot', password: 'hunter22', sessionToken: 'SESSIONTOKEN' };
    assert.equal(
      scrubSecrets('fatal: hunter22 rejected; token SESSIONTOKEN for bot', creds),
      'fatal: *** rejected; token *** for bot',
    );
    assert.equal(scrubSecrets('nothing here', undefined), 'nothing here');
  });
});
