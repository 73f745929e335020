// welcome.connectionId names one connection: present on every welcome, never shared by two
// connections, whether they belong to one user (tabs), to several users, or follow each other.
import { describe, expect, it } from "vitest";
import { connect } from "../support/socket";
import { tokenFor } from "../support/tokens";

async function welcomeOf(room: string, user: string, query?: Record<string, string | number>) {
  const s = await connect(room, { token: await tokenFor(user, room), ...(query ? { query } : {}) });
  return { s, welcome: await s.next("welcome") };
}

describe("welcome.connectionId", () => {
  it("is present on every welcome and unique across tabs, users, reconnects and rooms", async () => {
    const joined = [];
    for (const user of ["alice", "alice", "alice", "bob", "carol"]) joined.push(await welcomeOf("conn-ids", user));
    // alice's first tab reconnects (resuming), and someone joins another room
    joined[0]!.s.close();
    await joined[0]!.s.closed;
    joined.push(await welcomeOf("conn-ids", "alice", { since: 0, epoch: joined[0]!.welcome.epoch }));
    joined.push(await welcomeOf("conn-ids-other", "alice"));

    const ids = joined.map((j) => j.welcome.connectionId);
    for (const id of ids) expect(id).toEqual(expect.stringMatching(/^\S+$/));
    expect(new Set(ids).size, `connection ids ${ids.join(",")}`).toBe(ids.length);
    for (const j of joined) j.s.close();
  });
});
