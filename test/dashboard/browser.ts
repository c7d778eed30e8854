// Headless Chromium (Debian's package) driven by playwright-core, and the
// dashboard's sign-in as a user does it.
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { repoRoot } from '../twill/fixtures/probe-image.js';

export const CHROMIUM = process.env.WEFT_CHROMIUM ?? '/usr/bin/chromium';

/** Flags for a sandboxed CI machine with no network beyond loopback. */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic', '--disable-dev-shm-usage'];

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (scripts/apt-packages.txt lists it; scripts/setup --test installs it)`);
  // launch() gives every browser a fresh temporary profile (user-data-dir) and removes it on close.
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
}

export interface SignedIn {
  context: BrowserContext;
  page: Page;
  /** Every URL the page asked the master for. */
  requests: string[];
  /** Requests to anything but the master (must stay empty). */
  foreign: string[];
}

/** A new browser context on the master's page, signed in with `token` through the form. */
export async function signIn(browser: Browser, base: string, token: string, options: { viewport?: { width: number; height: number }; hash?: string } = {}): Promise<SignedIn> {
  const context = await browser.newContext({ viewport: options.viewport ?? { width: 1280, height: 800 }, colorScheme: 'light' });
  const page = await context.newPage();
  const requests: string[] = [];
  const foreign: string[] = [];
  page.on('request', (r) => {
    requests.push(r.url());
    if (!r.url().startsWith(base) && !r.url().startsWith('data:')) foreign.push(r.url());
  });
  await page.goto(`${base}/${options.hash ?? ''}`);
  await page.getByLabel('Master token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('header.top').waitFor({ timeout: 15_000 });
  return { context, page, requests, foreign };
}

/** Saves a screenshot into docs/ when WEFT_UPDATE_SCREENSHOTS=1, else into a temp file (so test runs leave the tree clean). */
export async function screenshot(page: Page, name: string, tmp: string, fullPage = false): Promise<string> {
  const dir = process.env.WEFT_UPDATE_SCREENSHOTS === '1' ? path.join(repoRoot, 'docs', 'images') : tmp;
  await fs.mkdir(dir, { recursive: true });
  const file = path.join(dir, name);
  await page.screenshot({ path: file, fullPage });
  return file;
}
