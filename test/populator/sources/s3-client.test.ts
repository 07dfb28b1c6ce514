import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { S3Access } from '../../../src/populator/sources/s3-client.js';
import { parseSourceSpec } from '../../../src/populator/spec.js';

/**
 * s3rver does not verify V4 signatures, so the GETs S3Access sends are captured by a server on
 * 127.0.0.1 and their signatures recomputed here, independently of the signer the driver uses.
 */

const CREDENTIALS = {
  accessKeyId: 'AKIDEXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
};

const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();

/** SigV4 of a GET without query or body, written from the AWS documentation's steps. */
function expectedAuthorization(path: string, headers: IncomingHttpHeaders, region: string): string {
  const amzDate = String(headers['x-amz-date']);
  const day = amzDate.slice(0, 8);
  const signed = ['host', 'x-amz-content-sha256', 'x-amz-date', 'x-amz-security-token'].filter(
    (name) => headers[name] !== undefined,
  );
  const canonical = [
    'GET',
    path,
    '',
    ...signed.map((name) => `${name}:${String(headers[name]).trim()}`),
    '',
    signed.join(';'),
    'UNSIGNED-PAYLOAD',
  ].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const toSign = [
    'AWS4-HMAC-SHA256',
    amzDate,
    scope,
    createHash('sha256').update(canonical).digest('hex'),
  ].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${CREDENTIALS.secretAccessKey}`, day), region), 's3'), 'aws4_request');
  const signature = createHmac('sha256', key).update(toSign).digest('hex');
  return `AWS4-HMAC-SHA256 Credential=${CREDENTIALS.accessKeyId}/${scope}, SignedHeaders=${signed.join(';')}, Signature=${signature}`;
}

describe('populator S3 object GETs', () => {
  let server: Server;
  let endpoint: string;
  const seen: { url: string; headers: IncomingHttpHeaders }[] = [];

  before(async () => {
    server = createServer((req, res) => {
      seen.push({ url: req.url ?? '', headers: req.headers });
      res.writeHead(200, { 'content-length': 2 }).end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => new Promise((resolve) => server.close(resolve)));

  const get = async (key: string, credentials?: object, region = 'eu-west-1') => {
    const spec = parseSourceSpec({ type: 's3', s3: { bucket: 'my-bucket', endpoint, region } }).s3!;
    const access = new S3Access(spec, credentials, 2);
    try {
      const response = await access.get(key, new AbortController().signal);
      response?.resume();
    } finally {
      access.destroy();
    }
    return seen[seen.length - 1]!;
  };

  const keys = ['plain/key.txt', 'dir/with space+plus*().txt', 'été/✓'];
  for (const key of keys) {
    it(`signs the GET of "${key}" with a signature that verifies`, async () => {
      const { url, headers } = await get(key, CREDENTIALS);
      assert.equal(
        url,
        `/my-bucket/${key
          .split('/')
          .map(encodeURIComponent)
          .join('/')
          .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`,
      );
      assert.equal(headers['x-amz-content-sha256'], 'UNSIGNED-PAYLOAD');
      assert.equal(headers.authorization, expectedAuthorization(url, headers, 'eu-west-1'));
    });
  }

  it('signs the session token too', async () => {
    const { url, headers } = await get('k', {
      ...CREDENTIALS,
      sessionToken: 'FQoGZXIvYXdzEJr//////////wEaD',
    });
    assert.equal(headers['x-amz-security-token'], 'FQoGZXIvYXdzEJr//////////wEaD');
    assert.match(
      String(headers.authorization),
      /SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,/,
    );
    assert.equal(headers.authorization, expectedAuthorization(url, headers, 'eu-west-1'));
  });

  it('sends anonymous GETs without any credential header', async () => {
    const { headers } = await get('k');
    assert.equal(headers.authorization, undefined);
    assert.equal(headers['x-amz-security-token'], undefined);
  });
});
