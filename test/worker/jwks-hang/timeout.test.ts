// The key server accepts the connection and never answers: the fetch timeout must turn that
// into 503 auth_unavailable (retry later), not a request that hangs and not a 401.
import { it } from "vitest";
import { expectAuthUnavailable, request, upgradeHeaders } from "../../support/edge";
import { idpToken } from "../../support/idp";

const ROOM = "hang";

// The bound: the fetch timeout (5 s) plus room for a loaded machine. Hanging fails the test.
it("answers 503 auth_unavailable once the key fetch times out, on the upgrade and on HTTP", { timeout: 30_000 }, async () => {
  const token = await idpToken("alice", ROOM);
  await expectAuthUnavailable(await request(`/rooms/${ROOM}/ws?token=${token}`, { headers: upgradeHeaders() }));
  await expectAuthUnavailable(await request(`/rooms/${ROOM}/presence`, { headers: { authorization: `Bearer ${token}` } }));
});
