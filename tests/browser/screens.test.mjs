// Real-browser test of the shop screens: /kitchen (staff) and /board (public pickup board).
//
//   cargo build                      # at the repository root; this test builds nothing
//   cd tests/browser && npm ci       # playwright-core only, no browser download
//   node --test tests/browser/       # from the repository root
//
// Screenshots go to <repo>/target/screenshots/{kitchen,board}.png. See harness.mjs for
// the environment variables.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import {
  STAFF_TOKEN, WAIT, createOrder, launchBrowser, prepare, screenshotDir, startServer, steps,
  stopServer, tearDown, waitForText, watchPages,
} from "./harness.mjs";

const WRONG_TOKEN = "wrong-" + randomBytes(12).toString("hex");
const step = steps();

const card = (column, n) => `#col-${column} .card[data-order-number="${n}"]`;
const readyNumber = (n) => `.ready-number[data-order-number="${n}"]`;

describe("kitchen and pickup board screens", { concurrency: false }, () => {
  let dataDir, server, base, browser, kitchen, board;
  const pageErrors = [];
  const numbers = [];

  before(async () => {
    dataDir = await prepare();
    server = startServer(dataDir);
    base = `http://127.0.0.1:${await server.ready}`;
    browser = await launchBrowser();
    const kitchenContext = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: "ja-JP" });
    const boardContext = await browser.newContext({ viewport: { width: 1920, height: 1080 }, locale: "ja-JP" });
    kitchen = await kitchenContext.newPage();
    board = await boardContext.newPage();
    watchPages({ kitchen, board }, pageErrors);
  });

  after(() => tearDown(browser, server, dataDir));

  step("serves both pages as self-contained HTML", async () => {
    for (const p of ["/kitchen", "/board"]) {
      const res = await fetch(base + p);
      assert.equal(res.status, 200, `GET ${p}`);
      assert.match(res.headers.get("content-type") ?? "", /^text\/html/, `GET ${p} content type`);
      const html = await res.text();
      assert.doesNotMatch(html, /<(script|link)[^>]+(src|href)=["']?(https?:)?\/\//i, `${p} loads nothing external`);
    }
  });

  step("refuses a wrong staff token", async () => {
    await kitchen.goto(base + "/kitchen");
    await kitchen.waitForSelector("#login", { state: "visible", ...WAIT });
    await kitchen.fill("#token", WRONG_TOKEN);
    await kitchen.click("#login-button");
    await waitForText(kitchen, "#error", "トークンが違います");
    await kitchen.waitForSelector("#login", { state: "visible", ...WAIT });
    assert.notEqual((await kitchen.textContent("#status")).trim(), "接続中");
  });

  step("goes live with the right token, and stays logged in across a reload", async () => {
    await kitchen.fill("#token", STAFF_TOKEN);
    await kitchen.click("#login-button");
    await waitForText(kitchen, "#status", "接続中");
    assert.equal(await kitchen.isVisible("#error"), false, "the refusal banner is gone");
    await kitchen.reload();
    await waitForText(kitchen, "#status", "接続中");
    assert.equal(await kitchen.isVisible("#login"), false, "no login form after a reload");
  });

  step("shows new orders in 注文受付 without a reload", async () => {
    for (let i = 0; i < 3; i++) {
      const order = await createOrder(base, "giiku-sai");
      assert.equal(order.status, "pending");
      numbers.push(order.order_number);
    }
    assert.deepEqual(numbers, [1, 2, 3], "a fresh data directory numbers from 1");
    for (const n of numbers) {
      await kitchen.waitForSelector(card("pending", n), WAIT);
      assert.equal((await kitchen.textContent(`${card("pending", n)} .num`)).trim(), `#${n}`);
      assert.equal((await kitchen.textContent(`${card("pending", n)} .menu`)).trim(), "技育祭な いちご味");
    }
    // created_at is known for orders made while the server runs: the age is shown.
    assert.match(await kitchen.textContent(`${card("pending", 1)} .age`), /たった今|分前/);
  });

  step("opens the pickup board", async () => {
    await board.goto(base + "/board");
    await waitForText(board, "h1", "お受け取り準備ができました");
    await waitForText(board, "#status", "接続中");
    assert.equal(await board.locator(".ready-number").count(), 0, "nothing is ready yet");
  });

  step("できあがり moves order 1 to 受取待ち and onto the board", async () => {
    const button = `${card("pending", 1)} button.advance`;
    assert.equal((await kitchen.textContent(button)).trim(), "できあがり");
    await kitchen.click(button);
    await kitchen.waitForSelector(card("waitingPickup", 1), WAIT);
    await kitchen.waitForSelector(card("pending", 1), { state: "detached", ...WAIT });
    await board.waitForSelector(readyNumber(1), WAIT);
    assert.equal((await board.textContent(readyNumber(1))).trim(), "1");
  });

  step("受け渡し完了 moves order 1 to 受取済み and off the board", async () => {
    const button = `${card("waitingPickup", 1)} button.advance`;
    assert.equal((await kitchen.textContent(button)).trim(), "受け渡し完了");
    await kitchen.click(button);
    await kitchen.waitForSelector(card("completed", 1), WAIT);
    await kitchen.waitForSelector(card("waitingPickup", 1), { state: "detached", ...WAIT });
    await board.waitForSelector(readyNumber(1), { state: "detached", ...WAIT });
    assert.equal(await kitchen.locator(`${card("completed", 1)} button.advance`).isVisible(), false,
      "a completed card has no action");
  });

  step("follows moves made elsewhere (staff REST) and shows several flavours", async () => {
    // Give both screens something in every place: order 2 made ready here, orders 4–9 of
    // every flavour created, 4–7 made ready through the staff API (as another tablet would).
    await kitchen.click(`${card("pending", 2)} button.advance`);
    await kitchen.waitForSelector(card("waitingPickup", 2), WAIT);
    await board.waitForSelector(readyNumber(2), WAIT);
    const flavours = ["giiku-haku", "giiku-ten", "giiku-camp", "giiku-sai", "giiku-haku", "giiku-ten"];
    for (const menu_item_id of flavours) numbers.push((await createOrder(base, menu_item_id)).order_number);
    for (const n of numbers.slice(3, 7)) {
      const res = await fetch(`${base}/api/v1/stores/orders/store-001-${n}/waiting-pickup`, {
        method: "POST",
        headers: { Authorization: `Bearer ${STAFF_TOKEN}` },
      });
      assert.equal(res.status, 200, `waiting-pickup of ${n}`);
    }
    for (const n of numbers.slice(3, 7)) {
      await kitchen.waitForSelector(card("waitingPickup", n), WAIT);
      await board.waitForSelector(readyNumber(n), WAIT);
    }
    for (const n of numbers.slice(7)) await kitchen.waitForSelector(card("pending", n), WAIT);
    assert.deepEqual(
      await board.$$eval(".ready-number", (els) => els.map((e) => Number(e.dataset.orderNumber))),
      [2, ...numbers.slice(3, 7)],
      "the board lists the ready orders in number order",
    );
  });

  step("saves screenshots of both screens", async () => {
    await mkdir(screenshotDir, { recursive: true });
    // Let the arrival highlight fade so the pictures show the resting state.
    await kitchen.waitForTimeout(1500);
    await kitchen.screenshot({ path: path.join(screenshotDir, "kitchen.png") });
    await board.screenshot({ path: path.join(screenshotDir, "board.png"), animations: "disabled" });
  });

  step("reconnects by itself after a server restart", async () => {
    const port = server.port;
    await stopServer(server);
    await waitForText(kitchen, "#error", "再接続");
    await kitchen.waitForFunction(() => document.querySelector("#status").textContent !== "接続中", null, WAIT);
    await board.waitForFunction(() => document.querySelector("#status").textContent !== "接続中", null, WAIT);
    server = startServer(dataDir, `127.0.0.1:${port}`);
    await server.ready;
    await waitForText(kitchen, "#status", "接続中");
    await waitForText(board, "#status", "接続中");
    await kitchen.waitForSelector("#error", { state: "hidden", ...WAIT });
    // The snapshot after re-auth restores every column and the board.
    await kitchen.waitForSelector(card("pending", 3), WAIT);
    await kitchen.waitForSelector(card("waitingPickup", 2), WAIT);
    await kitchen.waitForSelector(card("completed", 1), WAIT);
    await board.waitForSelector(readyNumber(2), WAIT);
  });

  step("logs out", async () => {
    await kitchen.click("#logout");
    await kitchen.waitForSelector("#login", { state: "visible", ...WAIT });
    assert.equal(await kitchen.evaluate(() => sessionStorage.length), 0, "the token is forgotten");
    assert.equal(await kitchen.locator(".card").count(), 0);
  });

  it("raised no JavaScript errors", () => {
    assert.deepEqual(pageErrors, []);
  });
});
