import { describe, expect, it } from "vitest";
import { ResumePoint } from "../../src/client/resume";

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
});
