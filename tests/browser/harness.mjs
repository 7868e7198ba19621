// What the real-browser tests share: where the server and the browser are, starting and
// stopping the server, waiting for text, and steps that stop at the first failure.
//
// Environment:
//   KAKIGORI_BIN     server binary (default ../../target/debug/kakigori from this file)
//   CHROMIUM_PATH    browser (default /usr/bin/chromium, Debian's `chromium` package)

import { it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "../..");
const serverBin = process.env.KAKIGORI_BIN
  ? path.resolve(process.env.KAKIGORI_BIN)
  : path.resolve(here, "../../target/debug/kakigori");
const chromiumPath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
export const screenshotDir = path.join(repoRoot, "target", "screenshots");

export const WAIT = { timeout: 10_000 };
export const STAFF_TOKEN = randomBytes(18).toString("hex"); // 36 characters
const LAUNCH_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Checks the binary and the browser are there; returns a fresh data directory. */
export async function prepare() {
  assert.ok(existsSync(serverBin), `no server binary at ${serverBin}: run \`cargo build\` first or set KAKIGORI_BIN`);
  assert.ok(existsSync(chromiumPath), `no browser at ${chromiumPath}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  return mkdtemp(path.join(tmpdir(), "kakigori-browser-"));
}

export function launchBrowser() {
  return chromium.launch({ executablePath: chromiumPath, headless: true, args: LAUNCH_ARGS });
}

/** Gives each page the test's timeout and collects its JavaScript errors in `errors`. */
export function watchPages(pages, errors) {
  for (const [name, page] of Object.entries(pages)) {
    page.setDefaultTimeout(WAIT.timeout);
    page.on("pageerror", (e) => errors.push(`${name}: ${e.message}`));
  }
}

/** Closes the browser, stops the server and removes its data directory. */
export async function tearDown(browser, server, dataDir) {
  await browser?.close().catch(() => {});
  await stopServer(server);
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
}

/**
 * Starts the server (extra flags in `args`); `server.ready` resolves once its stderr
 * names the port it listens on.
 */
export function startServer(dataDir, listen = "127.0.0.1:0", args = []) {
  const child = spawn(serverBin, ["--listen", listen, "--data-dir", dataDir, "--cores", "2", ...args], {
    env: { ...process.env, KAKIGORI_STAFF_TOKEN: STAFF_TOKEN, KAKIGORI_LOG: "info" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const server = { child, log: "", port: null, exited: null };
  child.exitPromise = new Promise((resolve) => child.once("exit", (code, signal) => {
    server.exited = { code, signal };
    resolve(server.exited);
  }));
  server.ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not report its port within 20 s:\n${server.log}`)), 20_000);
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      server.log += chunk;
      const m = server.log.match(/listening on 127\.0\.0\.1:(\d+) with (\d+) cores/);
      if (m && server.port === null) {
        server.port = Number(m[1]);
        clearTimeout(timer);
        resolve(server.port);
      }
    });
    child.once("error", (e) => { clearTimeout(timer); reject(e); });
    child.exitPromise.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`server exited (code ${code}, signal ${signal}) before listening:\n${server.log}`));
    });
  });
  return server;
}

export async function stopServer(server, signal = "SIGTERM") {
  if (!server || server.exited) return;
  server.child.kill(signal);
  let timer;
  const timeout = new Promise((r) => { timer = setTimeout(r, 15_000, "timeout"); });
  const outcome = await Promise.race([server.child.exitPromise, timeout]);
  clearTimeout(timer);
  if (outcome === "timeout") {
    server.child.kill("SIGKILL");
    await server.child.exitPromise;
  }
}

/** Waits until the element matching `selector` is shown and its text contains `text`. */
export function waitForText(page, selector, text) {
  return page.waitForFunction(
    ([sel, want]) => {
      const el = document.querySelector(sel);
      return !!el && !el.hidden && el.getClientRects().length > 0 && el.textContent.includes(want);
    },
    [selector, text],
    WAIT,
  );
}

/** Creates an order over REST; resolves to the Order. */
export async function createOrder(base, menu_item_id) {
  const res = await fetch(base + "/api/v1/stores/orders", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ menu_item_id }),
  });
  assert.equal(res.status, 201, `order of ${menu_item_id}`);
  return res.json();
}

/**
 * Test steps that build on one another: after the first failure the rest are skipped
 * instead of each timing out in turn.
 */
export function steps() {
  let failedStep = null;
  return function step(name, fn) {
    it(name, async (t) => {
      if (failedStep) {
        t.skip(`skipped: "${failedStep}" failed`);
        return;
      }
      try {
        await fn(t);
      } catch (e) {
        failedStep = name;
        throw e;
      }
    });
  };
}
