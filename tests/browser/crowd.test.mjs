// Real-browser test of the venue's crowd screen, /crowd, with chanting clients in two
// rooms (a second browser page of plain WebSockets, as the guests' phones would be).
// Run as screens.test.mjs is; the screenshot goes to <repo>/target/screenshots/crowd.png
// (and crowd-rest.png, every meter at rest).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import {
  WAIT, createOrder, launchBrowser, prepare, screenshotDir, startServer, steps, stopServer,
  tearDown, waitForText, watchPages,
} from "./harness.mjs";

const step = steps();
const card = (id) => `.flavour[data-menu-id="${id}"]`;
// The louder room starts later, so the history lines show its surge.
const LOUD = { room: "giiku-sai", clients: 3, value: 0.8, afterMs: 3000 };
const SOFT = { room: "giiku-haku", clients: 2, value: 0.3, afterMs: 0 };
const QUIET = ["giiku-ten", "giiku-camp"];
/** Faster than the front end's 5 values/s, so averages arrive faster than frames. */
const SEND_EVERY_MS = 40;

/**
 * Installed in the crowd page before its own script: counts animation frames, DOM
 * changes made inside a frame and outside one, and the messages and sends of its /ws
 * sockets. A change the page makes in a frame is taken by `takeRecords` at the end of
 * that frame; only changes made anywhere else reach the observer's callback.
 */
function installProbe() {
  const probe = { frames: 0, inFrame: 0, outside: 0, messages: 0, sent: 0 };
  window.__probe = probe;
  const observer = new MutationObserver((records) => { probe.outside += records.length; });
  observer.observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
  const raf = window.requestAnimationFrame.bind(window);
  window.requestAnimationFrame = (callback) => raf((t) => {
    probe.frames++;
    try { callback(t); } finally { probe.inFrame += observer.takeRecords().length; }
  });
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      if (/\/ws\?room=/.test(String(url))) {
        this.addEventListener("message", () => { probe.messages++; });
        this.send = () => { probe.sent++; };
      }
    }
  };
}

/** The shown figures of one flavour's card. */
function figures(page, id) {
  return page.$eval(card(id), (el) => ({
    level: el.querySelector(".level").textContent.trim(),
    count: el.querySelector(".count").textContent.trim(),
    today: el.querySelector(".today").firstChild.nodeValue.trim(),
    loudest: el.classList.contains("loudest"),
    state: el.dataset.state,
    note: el.querySelector(".note").textContent.trim(),
  }));
}

function waitForFigures(page, id, want) {
  return page.waitForFunction(
    ([sel, want]) => {
      const el = document.querySelector(sel);
      if (!el) return false;
      const shown = {
        level: el.querySelector(".level").textContent.trim(),
        count: el.querySelector(".count").textContent.trim(),
        today: el.querySelector(".today").firstChild.nodeValue.trim(),
        loudest: el.classList.contains("loudest"),
      };
      return Object.entries(want).every(([k, v]) => shown[k] === v);
    },
    [card(id), want],
    WAIT,
  );
}

describe("crowd screen", { concurrency: false }, () => {
  let dataDir, server, base, browser, crowd, chanters;
  const pageErrors = [];

  before(async () => {
    dataDir = await prepare();
    server = startServer(dataDir);
    base = `http://127.0.0.1:${await server.ready}`;
    browser = await launchBrowser();
    const crowdContext = await browser.newContext({ viewport: { width: 1920, height: 1080 }, locale: "ja-JP" });
    await crowdContext.addInitScript(installProbe);
    crowd = await crowdContext.newPage();
    chanters = await (await browser.newContext()).newPage();
    watchPages({ crowd, chanters }, pageErrors);
  });

  after(() => tearDown(browser, server, dataDir));

  step("serves the page as self-contained HTML", async () => {
    const res = await fetch(base + "/crowd");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/html/);
    const html = await res.text();
    assert.doesNotMatch(html, /<(script|link)[^>]+(src|href)=["']?(https?:)?\/\//i, "loads nothing external");
  });

  step("shows the four flavours at rest, and orders made before it opened", async () => {
    await createOrder(base, "giiku-sai");
    await createOrder(base, "giiku-camp");
    await crowd.goto(base + "/crowd");
    await waitForText(crowd, "#status", "接続中");
    const menu = (await (await fetch(base + "/api/v1/stores/menu")).json()).menu;
    assert.deepEqual(
      await crowd.$$eval(".flavour", (els) => els.map((e) => [e.dataset.menuId, e.querySelector(".name").textContent])),
      menu.map((item) => [item.id, item.name]),
      "the menu's flavours side by side, in menu order",
    );
    const colours = await crowd.$$eval(".flavour", (els) => els.map((e) => e.style.getPropertyValue("--c")));
    assert.equal(new Set(colours).size, 4, `each flavour has its own colour: ${colours}`);
    await waitForFigures(crowd, "giiku-sai", { today: "1" });
    await waitForFigures(crowd, "giiku-camp", { today: "1" });
    for (const item of menu) {
      assert.deepEqual(await figures(crowd, item.id), {
        level: "0", count: "0", today: item.id === "giiku-sai" || item.id === "giiku-camp" ? "1" : "0",
        loudest: false, state: "live", note: "",
      });
    }
    assert.equal(await crowd.locator(".loudest").count(), 0, "nobody chants: nothing is highlighted");
  });

  step("counts orders as they become durable", async () => {
    for (const id of ["giiku-sai", "giiku-sai", "giiku-haku", "giiku-camp"]) await createOrder(base, id);
    await waitForFigures(crowd, "giiku-sai", { today: "3" });
    await waitForFigures(crowd, "giiku-haku", { today: "1" });
    await waitForFigures(crowd, "giiku-camp", { today: "2" });
    await waitForText(crowd, "#total-today", "6");
    await waitForText(crowd, "#total-recent", "6");
    assert.equal((await crowd.textContent("#since")).trim(), "", "counted since midnight: no note");
  });

  step("chanting in two rooms moves their meters and highlights the louder", async () => {
    await chanters.goto(base + "/healthz");
    await chanters.evaluate(({ wsBase, plan, everyMs }) => {
      window.chant = { rooms: {}, timers: [] };
      for (const { room, clients, value, afterMs } of plan) {
        window.chant.rooms[room] = { last: null, sockets: [] };
        for (let i = 0; i < clients; i++) {
          const ws = new WebSocket(`${wsBase}/ws?room=${room}`);
          ws.onmessage = (ev) => { window.chant.rooms[room].last = JSON.parse(ev.data); };
          ws.onopen = () => window.chant.timers.push(setTimeout(() => {
            window.chant.timers.push(setInterval(() => ws.send(JSON.stringify({ value })), everyMs));
          }, afterMs));
          window.chant.rooms[room].sockets.push(ws);
        }
      }
    }, { wsBase: base.replace("http:", "ws:"), plan: [LOUD, SOFT], everyMs: SEND_EVERY_MS });
    await waitForFigures(crowd, SOFT.room, { level: "30", loudest: true });
    await waitForFigures(crowd, LOUD.room, { level: "80", loudest: true });
    await waitForFigures(crowd, SOFT.room, { level: "30", loudest: false });
    for (const id of QUIET) {
      assert.deepEqual({ ...(await figures(crowd, id)), today: "" },
        { level: "0", count: "0", today: "", loudest: false, state: "live", note: "" },
        `${id}: nobody there, its meter at rest`);
    }
    const [loud, soft] = [await figures(crowd, LOUD.room), await figures(crowd, SOFT.room)];
    assert.ok(Number(loud.count) > 0 && Number(soft.count) > 0, `busy rooms: ${loud.count}, ${soft.count}`);
    const fill = (id) => crowd.$eval(`${card(id)} .fill`, (el) => new DOMMatrix(getComputedStyle(el).transform).d);
    await crowd.waitForFunction((sel) => {
      const d = new DOMMatrix(getComputedStyle(document.querySelector(sel)).transform).d;
      return d > 0.75;
    }, `${card(LOUD.room)} .fill`, WAIT);
    assert.ok(await fill(LOUD.room) > await fill(SOFT.room), "the louder room's meter is higher");
    assert.equal(await fill(QUIET[0]), 0);
  });

  step("draws only in animation frames, however fast averages arrive", async () => {
    await crowd.evaluate(() => Object.assign(window.__probe, { frames: 0, inFrame: 0, outside: 0, messages: 0 }));
    await crowd.waitForFunction(() => window.__probe.frames >= 60, null, WAIT);
    const probe = await crowd.evaluate(() => ({ ...window.__probe }));
    console.log(`# crowd page: ${probe.messages} averages, ${probe.frames} frames, ${probe.inFrame} DOM changes in frames`);
    assert.equal(probe.outside, 0, "no DOM change outside an animation frame");
    assert.equal(probe.sent, 0, "nothing is ever sent on the /ws sockets");
    assert.ok(probe.messages > 0 && probe.inFrame > 0, `averages arrived and were drawn: ${JSON.stringify(probe)}`);
  });

  step("saves a screenshot while the rooms chant", async () => {
    await mkdir(screenshotDir, { recursive: true });
    // A few seconds more of chanting, for the picture's history lines.
    await crowd.waitForTimeout(3000);
    await crowd.screenshot({ path: path.join(screenshotDir, "crowd.png") });
  });

  step("when the chanting stops, the counts match the rooms' and the meters come to rest", async () => {
    await chanters.evaluate(() => window.chant.timers.forEach(clearTimeout));
    // The last average of each room reaches every member within the broadcast interval.
    await chanters.waitForTimeout(500);
    const last = await chanters.evaluate(() => Object.fromEntries(
      Object.entries(window.chant.rooms).map(([room, r]) => [room, r.last])));
    for (const { room, value } of [LOUD, SOFT]) {
      assert.ok(Math.abs(last[room].average - value) < 1e-9, `${room} averaged what its chanters sent: ${last[room].average}`);
      await waitForFigures(crowd, room, { count: String(last[room].count) });
    }
    // Five seconds after its last value a room's window is empty.
    for (const { room } of [LOUD, SOFT]) {
      await waitForFigures(crowd, room, { level: "0", count: "0", loudest: false });
    }
    await crowd.waitForFunction(() => !document.querySelector("main").classList.contains("has-leader"), null, WAIT);
    await crowd.waitForFunction(() => [...document.querySelectorAll(".fill")]
      .every((el) => new DOMMatrix(getComputedStyle(el).transform).d === 0), null, WAIT);
    await crowd.screenshot({ path: path.join(screenshotDir, "crowd-rest.png"), animations: "disabled" });
    assert.equal(await crowd.evaluate(() => window.__probe.sent), 0);
  });

  step("reconnects by itself after a server restart, and today's counts survive it", async () => {
    const port = server.port;
    await stopServer(server);
    await waitForText(crowd, "#status", "再接続しています");
    await waitForText(crowd, `${card("giiku-ten")} .note`, "再接続中");
    server = startServer(dataDir, `127.0.0.1:${port}`);
    await server.ready;
    await waitForText(crowd, "#status", "接続中");
    // Orders keep their creation time in the journal, so today's counts survive.
    await waitForFigures(crowd, "giiku-sai", { today: "3" });
    await waitForText(crowd, "#total-today", "6");
    assert.equal((await crowd.textContent("#since")).trim(), "", "still counted since midnight");
    await createOrder(base, "giiku-ten");
    await waitForFigures(crowd, "giiku-ten", { today: "1" });
    await waitForText(crowd, "#total-today", "7");
    assert.equal((await figures(crowd, "giiku-ten")).note, "");
    // The chanters' sockets closed with the old server; new chanting still moves the meter.
    await chanters.evaluate((wsBase) => {
      const ws = new WebSocket(`${wsBase}/ws?room=giiku-camp`);
      ws.onopen = () => ws.send(JSON.stringify({ value: 0.5 }));
    }, base.replace("http:", "ws:"));
    await waitForFigures(crowd, "giiku-camp", { level: "50", count: "1", loudest: true });
  });

  it("raised no JavaScript errors", () => {
    assert.deepEqual(pageErrors, []);
  });
});
