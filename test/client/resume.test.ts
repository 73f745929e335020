import { describe, expect, it } from "vitest";
import { AHEAD_LIMIT, ResumePoint } from "../../src/client/resume";

describe("resume point: since/epoch on reconnect", () => {
  it("asks for nothing before the first welcome", () => {
    expect(new ResumePoint().params()).toEqual({});
  });

  it("resumes from the last seq delivered, in the welcome's epoch", () => {
    const r = new ResumePoint();
    expect(r.welcome({ epoch: "e1", seq: 3, resume: "t3" })).toBe("fresh");
    expect(r.params()).toEqual({ since: "3", epoch: "e1", resume: "t3" });
    r.accept(4);
    r.accept(5);
    expect(r.params()).toEqual({ since: "5", epoch: "e1", resume: "t3" });
  });

  it("sends back the resume token of the latest welcome, recovered or not", () => {
    const r = new ResumePoint();
    r.welcome({ epoch: "e1", seq: 1, resume: "first" });
    r.welcome({ epoch: "e1", seq: 4, resume: "second", recovered: true });
    expect(r.params().resume).toBe("second");
  });

  it("tracks a recovered replay until it reaches the welcome's seq", () => {
    const r = new ResumePoint();
    r.welcome({ epoch: "e1", seq: 2, resume: "t2" });
    expect(r.welcome({ epoch: "e1", seq: 5, resume: "t5", recovered: true })).toBe("recovered");
    expect(r.replaying()).toBe(true);
    r.accept(3);
    r.accept(4);
    expect(r.replaying()).toBe(true);
    r.accept(5);
    expect(r.replaying()).toBe(false);
  });

  it("a recovered welcome with nothing missed has no replay", () => {
    const r = new ResumePoint();
    r.welcome({ epoch: "e1", seq: 2, resume: "t2" });
    expect(r.welcome({ epoch: "e1", seq: 2, resume: "t2", recovered: true })).toBe("recovered");
    expect(r.replaying()).toBe(false);
  });

  it("treats recovered:false, or an epoch change, as stale and restarts from the welcome", () => {
    const r = new ResumePoint();
    r.welcome({ epoch: "e1", seq: 2, resume: "t2" });
    expect(r.welcome({ epoch: "e1", seq: 90, resume: "t90", recovered: false })).toBe("stale");
    expect(r.params()).toEqual({ since: "90", epoch: "e1", resume: "t90" });
    expect(r.welcome({ epoch: "e2", seq: 0, resume: "t0", recovered: true })).toBe("stale");
    expect(r.params()).toEqual({ since: "0", epoch: "e2", resume: "t0" });
    expect(r.replaying()).toBe(false);
  });

  it("drops a message it already has", () => {
    const r = new ResumePoint();
    r.welcome({ epoch: "e1", seq: 2, resume: "t2" });
    expect(r.accept(2)).toBe(false);
    expect(r.accept(3)).toBe(true);
    expect(r.accept(3)).toBe(false);
  });

  it("a delete for the next seq holds its message's place: the position moves to it", () => {
    const r = new ResumePoint();
    r.welcome({ epoch: "e1", seq: 2, resume: "t2" });
    r.deleted(3);
    expect(r.seq).toBe(3);
    expect(r.accept(3)).toBe(false); // the deleted message itself, if it still comes
    expect(r.accept(4)).toBe(true);
  });

  it("a delete that overtook its message leaves the position; the message passes it but is not delivered", () => {
    const r = new ResumePoint();
    r.welcome({ epoch: "e1", seq: 0, resume: "t0" });
    r.deleted(3);
    expect(r.seq).toBe(0);
    expect(r.params().since).toBe("0");
    expect([r.accept(1), r.accept(2), r.accept(3), r.accept(4)]).toEqual([true, true, false, true]);
    expect(r.seq).toBe(4);
  });

  it("a delete of a message it already has changes nothing", () => {
    const r = new ResumePoint();
    r.welcome({ epoch: "e1", seq: 5, resume: "t5" });
    r.deleted(4);
    r.deleted(5);
    expect(r.seq).toBe(5);
    expect(r.accept(6)).toBe(true);
  });

  it("forgets a remembered delete once the position passes it without its message", () => {
    const r = new ResumePoint();
    r.welcome({ epoch: "e1", seq: 0, resume: "t0" });
    r.deleted(3);
    r.accept(4); // 3 never came: an out-of-order copy of it later is a duplicate anyway
    r.deleted(6);
    r.deleted(5); // the next seq: moves, and 6 stays remembered
    expect(r.seq).toBe(5);
    expect(r.accept(6)).toBe(false);
    expect(r.accept(7)).toBe(true);
  });

  it("keeps deletes ahead across a recovered welcome, and drops them on a stale one", () => {
    const r = new ResumePoint();
    r.welcome({ epoch: "e1", seq: 0, resume: "t0" });
    r.deleted(2);
    r.welcome({ epoch: "e1", seq: 3, resume: "t3", recovered: true });
    expect([r.accept(1), r.accept(2)]).toEqual([true, false]);
    expect(r.replaying()).toBe(true); // the replay ends at 3, not at the delete
    r.deleted(9);
    r.welcome({ epoch: "e2", seq: 8, resume: "t8", recovered: true });
    expect(r.accept(9)).toBe(true); // another epoch's 9
  });

  it("remembers at most AHEAD_LIMIT deletes, forgetting the oldest", () => {
    const r = new ResumePoint();
    r.welcome({ epoch: "e1", seq: 0, resume: "t0" });
    for (let seq = 2; seq <= AHEAD_LIMIT + 2; seq++) r.deleted(seq);
    expect(r.accept(2)).toBe(true); // forgotten
    expect(r.accept(3)).toBe(false);
    expect(r.accept(AHEAD_LIMIT + 2)).toBe(false); // the newest is still remembered
  });
});
