// VerifiedBody: a blob body hashed as it arrives, batched for the file writer.
// It must end cleanly only for exactly the right bytes, and keep flow control.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { VerifiedBody } from '../../src/registry/client/digest.js';
import { verifiesItself } from '../../src/image/blobstore.js';

const data = randomBytes(3 * 1024 * 1024 + 12345);
const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** The bytes as a socket would deliver them: 64 KiB chunks. */
function source(bytes: Buffer): Readable {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 65536) chunks.push(bytes.subarray(i, i + 65536));
  return Readable.from(chunks, { objectMode: false });
}

async function collect(stream: Readable, slow = false): Promise<Buffer> {
  const parts: Buffer[] = [];
  await pipeline(
    stream,
    new Writable({
      highWaterMark: 1,
      write(chunk: Buffer, _enc, callback) {
        parts.push(chunk);
        if (slow) setTimeout(callback, 2);
        else callback();
      },
    }),
  );
  return Buffer.concat(parts);
}

test('the right bytes pass whole, in batches, and the stream says it verifies itself', async () => {
  const body = new VerifiedBody(source(data), digest, data.length, 'blob');
  assert.ok(verifiesItself(body, { digest, size: data.length }));
  const sizes: number[] = [];
  body.on('data', (c: Buffer) => sizes.push(c.length));
  body.pause();
  const out = await collect(body);
  assert.ok(out.equals(data));
  assert.ok(sizes.filter((s) => s >= 1024 * 1024).length >= 3, `batches: ${sizes.join(', ')}`);
});

test('a slow consumer gets every byte (the source is paused and resumed)', async () => {
  const out = await collect(new VerifiedBody(source(data), digest, data.length, 'blob', 128 * 1024), true);
  assert.ok(out.equals(data));
});

test('wrong content, a short body, a long body and an unknown size with wrong content all fail before the end', async () => {
  const wrong = Buffer.from(data);
  wrong[1000]! ^= 1;
  await assert.rejects(collect(new VerifiedBody(source(wrong), digest, data.length, 'blob X')), /blob X: expected sha256:/);
  await assert.rejects(collect(new VerifiedBody(source(data.subarray(0, data.length - 1)), digest, data.length, 'blob X')), /got \d+ bytes, expected/);
  await assert.rejects(collect(new VerifiedBody(source(Buffer.concat([data, Buffer.from('x')])), digest, data.length, 'blob X')), /more than the \d+ bytes/);
  await assert.rejects(collect(new VerifiedBody(source(wrong), digest, undefined, 'blob X')), /expected sha256:/);
  assert.ok((await collect(new VerifiedBody(source(data), digest, undefined, 'blob X'))).equals(data));
});

test('a source that fails or closes early fails the body', async () => {
  const failing = new PassThrough();
  const body = new VerifiedBody(failing, digest, data.length, 'blob');
  const done = collect(body);
  failing.write(data.subarray(0, 100000));
  await sleep(5);
  failing.destroy(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
  await assert.rejects(done, /socket hang up/);
  const closing = new PassThrough();
  const cut = collect(new VerifiedBody(closing, digest, data.length, 'blob'));
  closing.write(data.subarray(0, 100000));
  await sleep(5);
  closing.destroy();
  await assert.rejects(cut, /closed after|premature/i);
});
