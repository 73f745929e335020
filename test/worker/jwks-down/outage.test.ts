// The key server answers 503 (its handler in vitest.config.ts counts the fetches): a genuine
// token is then the server's problem, answered 503 auth_unavailable with Retry-After so the SDK
// retries, never 401 (which the SDK takes as final). A token that is bad on its face stays 401.
import { expect, it } from "vitest";
import { expectAuthUnavailable, expectFailure, request, upgradeHeaders } from "../../support/edge";
import { idpToken } from "../../support/idp";
import { unsignedToken } from "../../support/jwt";

const ROOM = "outage";

/** How often the key set was fetched so far (the test's fetch goes to the same outbound handler). */
const keyFetches = async () => Number(await (await fetch("https://idp.test/hits")).text());

it("answers a genuine token 503 auth_unavailable with Retry-After on the upgrade and on HTTP routes", async () => {
  const token = await idpToken("alice", ROOM);
  await expectAuthUnavailable(await request(`/rooms/${ROOM}/ws?token=${token}`, { headers: upgradeHeaders() }));
  await expectAuthUnavailable(await request(`/rooms/${ROOM}/presence`, { headers: { authorization: `Bearer ${token}` } }));
  await expectAuthUnavailable(
    await request(`/rooms/${ROOM}/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ data: 1 }),
    }),
  );
});

it("still answers 401 to a token refused before any key is needed", async () => {
  const unsigned = unsignedToken({ sub: "mallory", rooms: { [ROOM]: ["*"] }, exp: Date.now() / 1000 + 60 });
  await expectFailure(await request(`/rooms/${ROOM}/presence?token=${unsigned}`), 401, "unauthorized");
  await expectFailure(await request(`/rooms/${ROOM}/presence?token=not.a.jwt`), 401, "unauthorized");
});

it("does not refetch the key set for every request during the outage", async () => {
  const token = await idpToken("bob", ROOM);
  await expectAuthUnavailable(await request(`/rooms/${ROOM}/presence?token=${token}`));
  const before = await keyFetches();
  expect(before).toBeGreaterThanOrEqual(1);
  for (let i = 0; i < 10; i++) {
    await expectAuthUnavailable(await request(`/rooms/${ROOM}/presence?token=${token}`));
  }
  // At most one: the cooldown may end during the loop on a slow machine, never ten times.
  expect((await keyFetches()) - before).toBeLessThanOrEqual(1);
});
