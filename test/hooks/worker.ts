// A user's Worker for the hooks tests: edgerooms mounted at /rt beside a route of its own, and
// a Room subclass with every hook. What each hook does is read off the payload or the user's
// id, so one class serves every test; each object keeps a log of the hooks it ran (`hookLog`),
// so a test can tell which object of a giant room ran them.
import {
  createRooms,
  Room,
  type JoinDecision,
  type JoinEvent,
  type LeaveEvent,
  type PublishDecision,
  type PublishEvent,
  type RoomEnv,
} from "../../src/server/index";

export type HooksEnv = RoomEnv & { CHAT: DurableObjectNamespace<HookedRoom>; CLASH: DurableObjectNamespace<ClashingRoom> };

export interface HookCall {
  hook: "publish" | "join" | "leave";
  user: string;
  room: string;
  via?: string;
  probe?: boolean;
}

/** The payloads the tests send: each field asks the hook for one behaviour. */
interface Payload {
  text?: string;
  /** decide after this many ms */
  wait?: number;
  /** accept as is */
  keep?: boolean;
  /** throw */
  fail?: boolean;
  /** answer something that is no decision */
  junk?: boolean;
  /** rewrite into a payload this many characters long */
  grow?: number;
  /** answer a non-decision that does not even serialize */
  bigint?: boolean;
  /** never answer */
  hang?: boolean;
}

export class HookedRoom extends Room<HooksEnv> {
  readonly #calls: HookCall[] = [];

  hookLog(): HookCall[] {
    return this.#calls;
  }

  override onPublish({ room, data, from, via }: PublishEvent): PublishDecision | Promise<PublishDecision> {
    this.#calls.push({ hook: "publish", user: from.id, room, via });
    const p = data as Payload;
    if (p.hang) return new Promise<never>(() => {});
    const decide = (): PublishDecision => {
      if (p.fail) throw new Error("the hook's own bug");
      if (p.junk) return { nonsense: true } as unknown as PublishDecision;
      if (p.bigint) return { nonsense: 1n } as unknown as PublishDecision;
      if (typeof p.text === "string" && p.text.includes("spam")) return { reject: "no spam here" };
      if (p.keep) return undefined;
      if (p.grow) return { data: { text: "x".repeat(p.grow) } };
      return { data: { ...p, checked: via } };
    };
    return p.wait ? scheduler.wait(p.wait).then(decide) : decide();
  }

  override async onJoin({ room, user, probe }: JoinEvent): Promise<JoinDecision> {
    this.#calls.push({ hook: "join", user: user.id, room, probe });
    if (user.id.startsWith("slow")) await scheduler.wait(30);
    if (user.id.startsWith("blocked")) return { reject: "blocked users stay out" };
    if (user.id.startsWith("joinbug")) throw new Error("onJoin's own bug");
  }

  override onLeave({ room, user }: LeaveEvent): void {
    this.#calls.push({ hook: "leave", user: user.id, room });
  }
}

// HISTORY_LIMIT in code, over the env's 50 (vitest.config.ts): the rooms must read it too.
export const CONFIG = { HISTORY_LIMIT: 5 };
/** A user's own `stats` and `range`, which would replace the ones a room's Worker and shards call. */
export class ClashingRoom extends Room<HooksEnv> {
  override stats(): never {
    throw new Error("never reached");
  }
  override range(): never {
    throw new Error("never reached");
  }
}

const rooms = createRooms({ room: "CHAT", path: "/rt", config: CONFIG });

export default {
  async fetch(request, env, ctx) {
    const answer = await rooms.fetch(request, env, ctx);
    if (answer) return answer;
    const url = new URL(request.url);
    if (url.pathname === "/own") return new Response("own route");
    return new Response("not mine", { status: 404 });
  },
} satisfies ExportedHandler<HooksEnv>;
