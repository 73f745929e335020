// History pages against a history longer than any page (HISTORY_LIMIT is the default 1000 in
// this project): the default page is 50, `limit` goes up to 100 and 101 is refused, over HTTP
// and over the socket alike.
import { beforeAll, describe, expect, it } from "vitest";
import { call, fill } from "../../support/http";
import { connect, type TestSocket } from "../../support/socket";
import { tokenFor } from "../../support/tokens";

// The contract's figures, not the code's constants: a test against the constant would follow it.
const HISTORY_PAGE_DEFAULT = 50;
const HISTORY_PAGE_MAX = 100;
const room = "long-history";
const PUBLISHED = 120;
/** seqs newest first, from `top` down, `count` of them */
const newest = (top: number, count: number) => Array.from({ length: count }, (_, i) => top - i);
let token: string;

beforeAll(async () => {
  await fill(room, PUBLISHED);
  token = await tokenFor("reader", room, ["subscribe", "history"]);
});

describe("over HTTP", () => {
  const page = (query: string) => call("GET", `/rooms/${room}/history${query}`, { token });

  it(`answers ${HISTORY_PAGE_DEFAULT} messages without a limit, with more`, async () => {
    const res = await page("");
    expect(res.json.messages.map((m: { seq: number }) => m.seq)).toEqual(newest(PUBLISHED, HISTORY_PAGE_DEFAULT));
    expect(res.json.more).toBe(true);
  });

  it(`accepts limit=${HISTORY_PAGE_MAX} and refuses ${HISTORY_PAGE_MAX + 1}`, async () => {
    const max = await page(`?limit=${HISTORY_PAGE_MAX}`);
    expect(max.status).toBe(200);
    expect(max.json.messages.map((m: { seq: number }) => m.seq)).toEqual(newest(PUBLISHED, HISTORY_PAGE_MAX));
    expect(max.json.more).toBe(true);
    const over = await page(`?limit=${HISTORY_PAGE_MAX + 1}`);
    expect({ status: over.status, code: over.json.error.code }).toEqual({ status: 400, code: "bad_request" });
  });
});

describe("over the socket", () => {
  let s: TestSocket;
  beforeAll(async () => {
    s = await connect(room, { token });
    await s.next("welcome");
  });

  it(`answers ${HISTORY_PAGE_DEFAULT} messages without a limit, with more`, async () => {
    s.send({ type: "history", id: "default" });
    const res = await s.next("history", (h) => h.id === "default");
    expect(res.messages.map((m) => m.seq)).toEqual(newest(PUBLISHED, HISTORY_PAGE_DEFAULT));
    expect(res.more).toBe(true);
  });

  it(`accepts limit ${HISTORY_PAGE_MAX} and refuses ${HISTORY_PAGE_MAX + 1}`, async () => {
    s.send({ type: "history", limit: HISTORY_PAGE_MAX, id: "max" });
    s.send({ type: "history", limit: HISTORY_PAGE_MAX + 1, id: "over" });
    const max = await s.next("history", (h) => h.id === "max");
    expect(max.messages.map((m) => m.seq)).toEqual(newest(PUBLISHED, HISTORY_PAGE_MAX));
    expect(max.more).toBe(true);
    expect(await s.next("error", (e) => e.id === "over")).toMatchObject({ code: "bad_request" });
  });
});
