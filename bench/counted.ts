// Storage calls of the room, counted for the profile (profile.mjs `rooms`): how many statements
// and alarm writes a publish costs, and in how many separate commits. `CountedRoom` is the real
// room; only its storage's `exec` and `setAlarm` are wrapped, on their prototypes (the runtime's
// base class takes the real `ctx`), and only calls on a counted room's storage are counted.
import { Room } from "../src/room/room";
import type { Env } from "../src/env";

export interface StorageOps {
  /** frames the counted rooms received */
  messages: number;
  alarms: number;
  setAlarm: number;
  /** SQL statements by their first words (`INSERT INTO messages`, `SELECT seq`, …) */
  statements: Record<string, number>;
  /**
   * Events (frames, alarms, joins) that wrote: a statement other than SELECT or CREATE, or
   * setAlarm. Each is one implicit transaction, committed on its own before the sends it gates leave.
   */
  writeEvents: number;
}

export const ops: StorageOps = { messages: 0, alarms: 0, setAlarm: 0, statements: {}, writeEvents: 0 };

/** Returns the counts so far and starts again from zero. */
export function takeOps(): StorageOps {
  const out = structuredClone(ops);
  Object.assign(ops, { messages: 0, alarms: 0, setAlarm: 0, statements: {}, writeEvents: 0 });
  return out;
}

const counted = new WeakSet<object>();
let wrapped = false;
/** The event a counted room is running (numbered as they start), and the last one that wrote. */
let event = 0;
let wroteIn = -1;

function wrote(): void {
  if (wroteIn === event) return;
  wroteIn = event;
  ops.writeEvents++;
}

function wrap(storage: DurableObjectStorage): void {
  counted.add(storage);
  counted.add(storage.sql);
  if (wrapped) return;
  wrapped = true;
  const sqlProto = Object.getPrototypeOf(storage.sql) as SqlStorage;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with the instance's own `this`
  const exec = sqlProto.exec;
  sqlProto.exec = function (this: SqlStorage, query: string, ...bindings: unknown[]) {
    if (counted.has(this)) {
      const words = query.trim().split(/\s+/).slice(0, 3).join(" ");
      ops.statements[words] = (ops.statements[words] ?? 0) + 1;
      if (!/^(SELECT|CREATE)/i.test(words)) wrote();
    }
    return exec.call(this, query, ...bindings);
  } as SqlStorage["exec"];
  const storageProto = Object.getPrototypeOf(storage) as DurableObjectStorage;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with the instance's own `this`
  const setAlarm = storageProto.setAlarm;
  storageProto.setAlarm = function (this: DurableObjectStorage, ...args: Parameters<DurableObjectStorage["setAlarm"]>) {
    if (counted.has(this)) {
      ops.setAlarm++;
      wrote();
    }
    return setAlarm.apply(this, args);
  };
}

export class CountedRoom extends Room {
  constructor(ctx: DurableObjectState, env: Env) {
    wrap(ctx.storage);
    super(ctx, env);
  }

  override fetch(request: Request): Promise<Response> {
    event++;
    return super.fetch(request);
  }

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    event++;
    ops.messages++;
    super.webSocketMessage(ws, message);
  }

  override webSocketClose(ws: WebSocket, code: number): void {
    event++;
    super.webSocketClose(ws, code);
  }

  override alarm(): void {
    event++;
    ops.alarms++;
    super.alarm();
  }
}
