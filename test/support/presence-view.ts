// Who a client believes is in the room, from the frames it received: the list in its latest
// welcome, then each presence event after it, in order. Pure, so the Workers-pool tests and the
// end-to-end tests judge presence the same way.
import type { ServerFrame } from "../../src/protocol";

export interface PresenceView {
  here: Set<string>;
  /** events that contradict the view: a join for someone already there, a leave for someone absent */
  faults: string[];
}

export function presenceView(frames: ServerFrame[]): PresenceView {
  const here = new Set<string>();
  const faults: string[] = [];
  const start = frames.findLastIndex((f) => f.type === "welcome");
  for (const f of frames.slice(Math.max(0, start))) {
    if (f.type === "welcome") for (const p of f.presence) here.add(p.id);
    if (f.type !== "presence") continue;
    if (f.event === "join" && here.has(f.user.id)) faults.push(`join for ${f.user.id}, already here`);
    if (f.event === "leave" && !here.has(f.user.id)) faults.push(`leave for ${f.user.id}, not here`);
    if (f.event === "join") here.add(f.user.id);
    if (f.event === "leave") here.delete(f.user.id);
  }
  return { here, faults };
}
