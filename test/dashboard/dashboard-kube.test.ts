// The dashboard's checks against a master on the Kubernetes runtime (the test
// control plane, kwok nodes: pods are scheduled for real, their status comes
// from kwok stages, and no container runs, so there are no log lines here):
// a run turns COMPLETED on the page without a reload, an OOMKilled run says so
// at the top, stop from the page, and a viewer gets no controls.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { startMaster, type RunningMaster } from '../../src/master/index.js';
import { isTerminal, type RunState } from '../../src/runtime/index.js';
import { createKubeRuntime, type KubeRuntime } from '../../src/runtime/kube/index.js';
import { call, waitFor } from '../master/helpers.js';
import { KWOK, requireKubeconfig, testNamespace } from '../runtime-kube/helpers.js';
import { launchChromium, signIn } from './browser.js';

describe('the dashboard in Chromium, on the Kubernetes runtime (kwok nodes)', () => {
  let browser: Browser;
  let master: RunningMaster;
  let runtime: KubeRuntime;
  let ns: { name: string; drop: () => Promise<void> };
  let dir: string;
  let admin: string;
  const base = () => master.url;
  const batch = (name: string, kubernetes: Record<string, unknown>) => ({ name, startTimeout: '2m', stopTimeout: '5s', runnables: [{ name: 'main', kind: 'batch', image: 'registry.example/demo:1', kubernetes }] });
  const start = async (spec: unknown) => {
    const r = await call(base(), 'POST', '/api/v1/namespaces/dash/runs', { token: admin, body: { spec } });
    assert.equal(r.status, 201, r.text);
    return r.json.id as string;
  };
  const waitState = (id: string, wanted: (s: RunState) => boolean, what: string) =>
    waitFor(`run ${id} ${what}`, async () => {
      const run = (await call(base(), 'GET', `/api/v1/namespaces/dash/runs/${id}`, { token: admin })).json;
      return wanted(run.state) ? run : undefined;
    }, 90_000);

  before(async () => {
    requireKubeconfig();
    ns = await testNamespace('weft-dash');
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'weft-dash-kube-'));
    runtime = await createKubeRuntime({ runtime: 'kubernetes', namespace: ns.name, resyncMs: 30_000 });
    master = await startMaster({ addr: '127.0.0.1:0', store: `sqlite:${path.join(dir, 'master.db')}`, runtime, adminTokenFile: path.join(dir, 'admin-token'), reconcileIntervalMs: 60_000 });
    admin = (await fs.readFile(path.join(dir, 'admin-token'), 'utf8')).trim();
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await master?.close();
    await runtime?.close();
    await ns?.drop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  test('a run started through the API turns COMPLETED on the page without a reload', { timeout: 120_000 }, async (ctx) => {
    const { page, context } = await signIn(browser, base(), admin, { hash: '#/ns/dash/runs' });
    await page.locator('.live.on').waitFor({ timeout: 15_000 });
    await page.evaluate('window.__sameDocument = true');
    const id = await start(batch('kube-live', { podAnnotations: { [KWOK.readyDelay]: '1s', [KWOK.completeDelay]: '3s' } }));
    const row = page.locator(`tr[data-run-id="${id}"]`);
    await row.waitFor({ timeout: 15_000 });
    const done = await waitState(id, isTerminal, 'ends');
    assert.equal(done.state, 'COMPLETED');
    await row.locator('[data-state="COMPLETED"]').waitFor({ timeout: 30_000 });
    ctx.diagnostic(`COMPLETED on the page ${Date.now() - Date.parse(done.finishedAt)} ms after the run's recorded end`);
    assert.equal(await page.evaluate('window.__sameDocument'), true, 'the page was not reloaded');
    await context.close();
  });

  test('an OOMKilled run says so at the top, with the exit code and the memory limit', { timeout: 120_000 }, async () => {
    const spec = batch('kube-oom', { podLabels: { [KWOK.failed]: 'true' }, podAnnotations: { [`${KWOK.failed}/exit-code`]: '137', [`${KWOK.failed}/reason`]: 'OOMKilled' } });
    (spec.runnables[0] as Record<string, unknown>).resources = { memory: '128Mi' };
    const id = await start(spec);
    const done = await waitState(id, isTerminal, 'ends');
    assert.equal(done.state, 'FAILED');
    const { page, context } = await signIn(browser, base(), admin, { hash: `#/ns/dash/runs/${id}` });
    const failure = page.locator('section.failure');
    await failure.waitFor({ timeout: 15_000 });
    const text = (await failure.textContent()) ?? '';
    assert.match(text, /OOMKilled/);
    assert.match(text, /137/);
    assert.match(text, /128Mi/, 'the limit it ran into');
    if (done.message) assert.ok(text.includes(done.message), `the master's message "${done.message}" in: ${text}`);
    await context.close();
  });

  test("an unschedulable run shows the scheduler's message while it waits, and again when it failed", { timeout: 180_000 }, async () => {
    const spec = { ...batch('kube-huge', {}), startTimeout: '6s' };
    (spec.runnables[0] as Record<string, unknown>).resources = { cpu: '64', memory: '1Gi' };
    const id = await start(spec);
    const { page, context } = await signIn(browser, base(), admin, { hash: `#/ns/dash/runs/${id}` });
    await page.locator('section.waiting', { hasText: 'Insufficient cpu' }).waitFor({ timeout: 60_000 });
    const done = await waitState(id, isTerminal, 'fails at its start deadline');
    assert.equal(done.state, 'FAILED');
    assert.equal(done.reason, 'Unschedulable');
    const failure = page.locator('section.failure');
    await failure.waitFor({ timeout: 30_000 });
    assert.match((await failure.textContent()) ?? '', /Unschedulable.*Insufficient cpu/s);
    await context.close();
  });

  test('scale and stop from the page on a service run; a viewer is offered no stop and a forged one is refused', { timeout: 120_000 }, async () => {
    const spec = { name: 'kube-svc', stopTimeout: '5s', runnables: [{ name: 'web', kind: 'service', image: 'registry.example/web:1', ports: [{ name: 'http', port: 8080 }] }] };
    const id = await start(spec);
    await waitState(id, (s) => s === 'RUNNING', 'runs');

    const viewer = await call(base(), 'POST', '/api/v1/tokens', { token: admin, body: { name: 'kube-watcher', roles: { dash: 'viewer' } } });
    const v = await signIn(browser, base(), viewer.json.token, { hash: `#/ns/dash/runs/${id}` });
    await v.page.getByTestId('read-only').waitFor({ timeout: 15_000 });
    assert.equal(await v.page.getByRole('button', { name: 'Stop', exact: true }).count(), 0);
    const forged = (await v.page.evaluate(`fetch('/api/v1/namespaces/dash/runs/${id}/stop', { method: 'POST', headers: { authorization: 'Bearer ' + sessionStorage.getItem('weft-token'), 'content-type': 'application/json' }, body: '{}' }).then((r) => r.status)`)) as number;
    assert.equal(forged, 403);
    await v.context.close();

    const { page, context } = await signIn(browser, base(), admin, { hash: `#/ns/dash/runs/${id}` });
    await page.locator('.runnable tr[data-instance]').first().waitFor({ timeout: 15_000 });
    assert.match((await page.locator('.runnable tr[data-instance]').first().textContent()) ?? '', /kwok-node-/, 'the instance shows its node');
    // Scale from the page: confirmed, accepted, and the second instance shows up.
    await page.locator('.runnable[data-runnable="web"]').getByLabel('Instances').fill('2');
    await page.locator('.runnable[data-runnable="web"]').getByRole('button', { name: 'Scale' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Scale' }).click();
    await page.getByTestId('control-result').filter({ hasText: 'Scale accepted' }).waitFor({ timeout: 15_000 });
    await page.locator('.runnable[data-runnable="web"] tr[data-instance]').nth(1).waitFor({ timeout: 30_000 });
    await page.getByRole('button', { name: 'Stop', exact: true }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Stop' }).click();
    await page.getByTestId('control-result').filter({ hasText: 'Stop accepted' }).waitFor({ timeout: 15_000 });
    const done = await waitState(id, isTerminal, 'stopped');
    assert.equal(done.state, 'KILLED');
    await page.locator('h1 [data-state="KILLED"]').waitFor({ timeout: 30_000 });
    await context.close();
  });
});
