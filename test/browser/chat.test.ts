// The demo page in a real Chromium against a real `wrangler dev` on loopback: two pages in one
// room, presence and messages both ways, then the server restarts under them (every socket
// drops, storage stays) and each page reconnects by itself and shows every message sent meanwhile.
import { existsSync, mkdirSync } from "node:fs";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDevServer, type DevServer } from "../../scripts/devserver.mjs";

const CHROMIUM = "/usr/bin/chromium";
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const ARTIFACTS = "artifacts";
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`SKIPPED the browser test: ${CHROMIUM} is missing (apt-get install -y chromium)`);

describe.skipIf(!hasChromium)("demo chat in a real browser", () => {
  let server: DevServer;
  let browser: Browser;

  beforeAll(async () => {
    [server, browser] = await Promise.all([
      startDevServer({ vars: { DEV_TOKENS: "true" } }),
      chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true, timeout: 60_000 }),
    ]);
  });
  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  });

  const log = (page: Page) => page.getByRole("log");
  const seqs = (page: Page) =>
    log(page)
      .locator("li[data-seq]")
      .evaluateAll((lis) => lis.map((li) => Number(li.getAttribute("data-seq"))));
  const shows = (page: Page, text: string) => log(page).getByText(text).waitFor({ timeout: 60_000 });
  const connected = (page: Page, name: string) => page.getByRole("status").getByText(`Connected as ${name}`).waitFor({ timeout: 60_000 });

  it("two pages chat, see each other, and recover every message after the server restarts", async () => {
    // The bundle is built by wrangler's [build] step; the page's sources are not served.
    expect((await fetch(`${server.url}/app.js`)).status).toBe(200);
    expect((await fetch(`${server.url}/chat.ts`)).status).toBe(404);

    const room = `browser-${Date.now().toString(36)}`;
    const desk = await browser.newPage({ viewport: { width: 1100, height: 760 } });
    const phone = await browser.newPage({ viewport: { width: 390, height: 780 }, isMobile: true, hasTouch: true });
    for (const p of [desk, phone]) p.on("pageerror", (e) => console.error(`page error: ${e.message}`));

    // One joins through the form, the other through a shared link.
    await desk.goto(`${server.url}/`);
    await desk.getByLabel("Your name").fill("ada");
    await desk.getByLabel("Room", { exact: true }).fill(room);
    await desk.getByRole("button", { name: "Join" }).click();
    await connected(desk, "ada");
    await phone.goto(`${server.url}/?room=${room}&name=bo`);
    await connected(phone, "bo");
    expect(await desk.getByRole("form", { name: "Join a room" }).isVisible()).toBe(false);

    const people = (p: Page) => p.getByRole("complementary");
    await people(desk).getByText("bo", { exact: true }).waitFor();
    await people(phone).getByText("ada", { exact: true }).waitFor();

    await desk.getByRole("textbox", { name: "Message" }).fill("hello from ada");
    await desk.getByRole("textbox", { name: "Message" }).press("Enter");
    await shows(phone, "hello from ada");
    await phone.getByRole("textbox", { name: "Message" }).fill("hi ada");
    await phone.getByRole("button", { name: "Send" }).click();
    await shows(desk, "hi ada");

    // Typing indicator through presence state.
    await desk.getByRole("textbox", { name: "Message" }).pressSequentially("typ");
    await phone.getByText("ada is typing…").waitFor();
    await desk.getByRole("textbox", { name: "Message" }).fill("");

    // Cut: the server goes away. Ada keeps writing; her messages wait in the outbox.
    const cutAt = Date.now();
    await server.stop();
    await desk
      .getByRole("status")
      .getByText(/Reconnecting in \d+ s/)
      .waitFor({ timeout: 30_000 });
    await phone
      .getByRole("status")
      .getByText(/Reconnecting in \d+ s/)
      .waitFor({ timeout: 30_000 });
    for (const text of ["sent while offline 1", "sent while offline 2"]) {
      await desk.getByRole("textbox", { name: "Message" }).fill(text);
      await desk.getByRole("textbox", { name: "Message" }).press("Enter");
    }
    await desk.getByText("sent while offline 2 — sending…").waitFor();
    mkdirSync(ARTIFACTS, { recursive: true });
    await desk.screenshot({ path: `${ARTIFACTS}/browser-chat-reconnecting.png` });

    await server.restart();
    const upAt = Date.now();
    // Published from a server while the pages are (most likely) still waiting out their backoff.
    const bobAway = (await phone.getByRole("status").textContent())?.includes("Reconnecting");
    const res = await fetch(`${server.url}/rooms/${room}/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${await server.token({ sub: "ops", rooms: { [room]: ["publish"] } })}`, "content-type": "application/json" },
      body: JSON.stringify({ data: { text: "announcement while you were away" } }),
    });
    expect(res.status).toBe(201);

    await Promise.all([connected(desk, "ada"), connected(phone, "bo")]);
    const reconnectedAt = Date.now();
    for (const p of [desk, phone]) {
      for (const text of ["sent while offline 1", "sent while offline 2", "announcement while you were away"]) await shows(p, text);
    }
    await expect.poll(() => desk.locator("#pending li").count(), { timeout: 20_000 }).toBe(0);

    // Every message exactly once, in seq order, on both pages.
    const want = [1, 2, 3, 4, 5];
    await expect.poll(() => seqs(phone)).toEqual(want);
    expect(await seqs(desk)).toEqual(want);
    await people(phone).getByText("ada", { exact: true }).waitFor();

    await phone.screenshot({ path: `${ARTIFACTS}/browser-chat-phone.png`, fullPage: true });
    await desk.screenshot({ path: `${ARTIFACTS}/browser-chat-desktop.png`, fullPage: true });
    console.log(
      `browser e2e: server down→up ${upAt - cutAt} ms, up→both pages reconnected ${reconnectedAt - upAt} ms` +
        ` (bo ${bobAway ? "was" : "was not"} still away when the announcement was published)`,
    );
  });
});
