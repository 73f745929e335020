// Generators of client frames the room must reject (issue #6), each with the answer it must get.
// Every generated frame is invalid by construction; `mayBeFrame` is a hand-written guard (not the
// server's schema) that throws away the rare random text that could parse as a real frame.
import fc from "fast-check";

export type Expected = "bad_request" | "too_large";
export interface Hostile {
  /** what kind of hostility, for the counts in the report */
  kind: string;
  payload: string | Uint8Array;
  /** the id the error frame must carry, when the frame parsed and had a valid one */
  id?: string;
}

/** The room project's MAX_MESSAGE_BYTES. */
export const MAX_BYTES = 4096;
const utf8 = new TextEncoder();
const TYPES = ["publish", "direct", "presence", "history"];

/** The code the room must answer with: binary is always bad_request, size is checked before parsing. */
export function expectedCode(h: Hostile): Expected {
  if (typeof h.payload !== "string") return "bad_request";
  return utf8.encode(h.payload).byteLength > MAX_BYTES ? "too_large" : "bad_request";
}

/** Could this text be an acceptable frame or the auto-answered ping? (Then it is not hostile.) */
export function mayBeFrame(text: string): boolean {
  if (text === "ping") return true;
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === "object" && v !== null && !Array.isArray(v) && TYPES.includes((v as { type?: unknown }).type as string);
  } catch {
    return false;
  }
}

const text =
  (kind: string) =>
  (payload: string): Hostile => ({ kind, payload });
const validId = fc.string({ minLength: 1, maxLength: 64 });
const smallJson = fc.jsonValue({ maxDepth: 3 });

// ---- random text and bytes ----------------------------------------------------------------

export const anyCodeUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));

const randomText = fc
  .oneof(
    fc.string({ maxLength: 200 }),
    fc.string({ unit: "binary", maxLength: 200 }),
    fc.string({ unit: anyCodeUnit, maxLength: 200 }), // lone surrogates become U+FFFD on the wire
    fc.string({ unit: fc.oneof(loneSurrogate, fc.constantFrom("{", "}", '"', ":", ",", "[", "]")), maxLength: 100 }),
    fc.constantFrom("", " ", "ping ", " ping", "PING", "pong", "null", "true", "0", "-0", "1e999", '""', "{}", "[]", "\u0000"),
  )
  .filter((s) => !mayBeFrame(s))
  .map(text("random text"));

const randomBytes = fc
  .oneof(fc.uint8Array({ maxLength: 256 }), fc.uint8Array({ minLength: 4000, maxLength: 9000 }))
  .map((b): Hostile => ({ kind: "binary", payload: b }));

// ---- malformed JSON ------------------------------------------------------------------------

const validFrameText = fc
  .record({ type: fc.constantFrom(...TYPES), data: smallJson, to: fc.constant("x"), state: fc.constant({}), id: validId })
  .map((f) => JSON.stringify(f));

const malformedJson = fc
  .oneof(
    // A strict prefix of an object's text never parses.
    fc.tuple(validFrameText, fc.nat()).map(([t, n]) => t.slice(0, 1 + (n % (t.length - 1)))),
    fc.tuple(validFrameText, fc.constantFrom("x", "}", ",", "]", "{", '"', "\\")).map(([t, g]) => t + g),
    fc.tuple(validFrameText, fc.constantFrom("x", "]", "}", ",", ":")).map(([t, g]) => g + t),
    fc.constantFrom(
      '{type:"publish",data:1}',
      "{'type':'publish','data':1}",
      '{"type":"publish","data":NaN}',
      '{"type":"publish","data":undefined}',
      '{"type":"publish","data":Infinity}',
      '{"type":"publish","data":1,}',
      '{"type":"publish",,"data":1}',
      '{"type":"publish" "data":1}',
      '{"type":"publish","data":0x10}',
      '{"type":"publish","data":01}',
      '{"type":"publish","data":+1}',
      '{"type":"publish","data":.5}',
      '{"type":"publish","data":"a\nb"}',
      '{"type":"publish","data":"\\x41"}',
      '{"type":"publish","data":"\\u12"}',
      '{"type":"publish","data":1}/*c*/',
      '// c\n{"type":"publish","data":1}',
      '{"type":"publish","data":1}{"type":"publish","data":2}',
      '{"type":"publish","data":1}\n{"type":"publish","data":2}',
      '\uFEFF{"type":"publish","data":1}',
    ),
  )
  .filter((s) => !mayBeFrame(s))
  .map(text("malformed JSON"));

// ---- deep nesting ----------------------------------------------------------------------------

const nest = (depth: number, open: string, close: string, inner = "1") => open.repeat(depth) + inner + close.repeat(depth);
const deeplyNested = fc
  .tuple(fc.integer({ min: 1, max: 3000 }), fc.nat(5))
  .map(([d, shape]) => {
    switch (shape) {
      case 0:
        return nest(d, "[", "]");
      case 1:
        return nest(d, '{"a":', "}");
      case 2:
        return `{"type":${nest(d, "[", "]", '"publish"')},"data":1}`;
      case 3:
        return `{"type":"presence","state":${nest(d, "[", "]")}}`;
      case 4:
        return `{"type":"publish","data":${"[".repeat(d)}`; // never closed
      default:
        return `{"type":"direct","to":${nest(d, '{"a":', "}")},"data":1}`;
    }
  })
  .map(text("deep nesting"));

// ---- valid JSON, wrong schema: one field of a valid frame made wrong -----------------------------

const notAString = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constant([]),
  fc.constant({}),
  fc.array(fc.string(), { maxLength: 3 }),
);
const badId = fc.oneof(notAString, fc.constant(""), fc.string({ minLength: 65, maxLength: 300 }));
const badTarget = fc.oneof(notAString, fc.constant(""), fc.string({ minLength: 65, maxLength: 300 }));
const badState = fc.oneof(
  fc.integer(),
  fc.string(),
  fc.boolean(),
  fc.constant(null),
  fc.array(smallJson, { maxLength: 3 }),
  fc.string({ minLength: 1100, maxLength: 2000 }).map((s) => ({ big: s })), // over 1024 bytes serialized
);
const badSeq = fc.oneof(
  fc.integer({ max: -1 }),
  fc.double({ noInteger: true, noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(2 ** 53, 1e300, -0.5, "1", "", null, true, [], {}, [1]),
);
const badLimit = fc.oneof(fc.integer({ max: 0 }), fc.integer({ min: 101 }), fc.constantFrom(1.5, 1e300, "10", null, false, [10], {}));
const badType = fc.oneof(
  fc.constantFrom("Publish", "PUBLISH", "publish ", " publish", "message", "ack", "welcome", "error", "", "publish\u0000", "ping"),
  fc.string({ maxLength: 20 }).filter((s) => !TYPES.includes(s)),
  notAString,
);

type Obj = Record<string, unknown>;
/** A base frame of `type`, with a valid id half the time, and one way to make it invalid. */
function mutated(type: string, base: fc.Arbitrary<Obj>, mutations: [string, fc.Arbitrary<(f: Obj) => void>][]) {
  return fc.tuple(base, fc.option(validId), fc.constantFrom(...mutations.map((m) => m[0]))).chain(([frame, id, which]) =>
    mutations
      .find((m) => m[0] === which)![1]
      .map((mutate) => {
        const f: Obj = { type, ...frame, ...(id === null ? {} : { id }) };
        mutate(f);
        const keptId = typeof f.id === "string" && f.id.length >= 1 && f.id.length <= 64 ? f.id : undefined;
        return { kind: `wrong schema: ${type}.${which}`, payload: JSON.stringify(f), ...(keptId === undefined ? {} : { id: keptId }) };
      }),
  );
}
const set = (key: string) => (v: fc.Arbitrary<unknown>) => v.map((value) => (f: Obj) => void (f[key] = value));
const remove = (key: string) => fc.constant((f: Obj) => void delete f[key]);

const wrongSchema: fc.Arbitrary<Hostile> = fc
  .oneof(
    mutated("publish", fc.record({ data: smallJson }), [
      ["data missing", remove("data")],
      ["id wrong", set("id")(badId)],
      ["type wrong", set("type")(badType)],
      ["type missing", remove("type")],
    ]),
    mutated("direct", fc.record({ to: fc.string({ minLength: 1, maxLength: 64 }), data: smallJson }), [
      ["to missing", remove("to")],
      ["to wrong", set("to")(badTarget)],
      ["data missing", remove("data")],
      ["id wrong", set("id")(badId)],
    ]),
    mutated("presence", fc.record({ state: fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 4 }) }), [
      ["state missing", remove("state")],
      ["state wrong", set("state")(badState)],
      ["id wrong", set("id")(badId)],
    ]),
    mutated(
      "history",
      fc.record({ before: fc.option(fc.nat(1000), { nil: undefined }), limit: fc.option(fc.integer({ min: 1, max: 100 }), { nil: undefined }) }),
      [
        ["before wrong", set("before")(badSeq)],
        ["limit wrong", set("limit")(badLimit)],
        ["id wrong", set("id")(badId)],
      ],
    ),
  )
  .filter((h) => !mayBeFrameLoose(h.payload));

/** `mayBeFrame` admits every object with a known type; the schema mutations are known-bad, so only guard against the generator producing a valid frame by accident (e.g. an id mutated to a valid id). */
function mayBeFrameLoose(text: string): boolean {
  const f = JSON.parse(text) as Obj;
  if (!TYPES.includes(f.type as string)) return false;
  const idOk = f.id === undefined || (typeof f.id === "string" && f.id.length >= 1 && f.id.length <= 64);
  if (!idOk) return false;
  switch (f.type) {
    case "publish":
      return "data" in f;
    case "direct":
      return "data" in f && typeof f.to === "string" && f.to.length >= 1 && f.to.length <= 64;
    case "presence":
      return typeof f.state === "object" && f.state !== null && !Array.isArray(f.state) && JSON.stringify(f.state).length <= 1024;
    default: {
      const seqOk = f.before === undefined || (Number.isSafeInteger(f.before) && (f.before as number) >= 0);
      const limOk = f.limit === undefined || (Number.isInteger(f.limit) && (f.limit as number) >= 1 && (f.limit as number) <= 100);
      return seqOk && limOk;
    }
  }
}

// ---- valid JSON that is not a frame object ------------------------------------------------------

const notAnObject = fc
  .oneof(
    fc
      .jsonValue({ maxDepth: 4 })
      .filter((v) => !(typeof v === "object" && v !== null && !Array.isArray(v) && TYPES.includes((v as Obj).type as string))),
    fc.array(
      validFrameText.map((t) => JSON.parse(t) as unknown),
      { maxLength: 3 },
    ), // arrays of real frames
    fc.constantFrom("publish", "ping", 0, -1, 1e308, null, true, false, ""),
  )
  .map((v) => JSON.stringify(v))
  .filter((s) => s !== undefined && !mayBeFrame(s))
  .map(text("JSON that is not a frame object"));

// ---- huge numbers and strings ------------------------------------------------------------------

const huge = fc
  .oneof(
    fc.integer({ min: 300, max: 5000 }).map((n) => `{"type":"history","limit":${"9".repeat(n)}}`),
    fc.integer({ min: 300, max: 5000 }).map((n) => `{"type":"history","before":${"9".repeat(n)}}`),
    fc.constantFrom(
      '{"type":"history","before":1e400}',
      '{"type":"history","limit":-1e400}',
      '{"type":"history","before":9007199254740993}',
      '{"type":"history","limit":1.0000000000000002}',
      '{"type":"history","before":1e-400,"limit":0}',
    ),
    // A valid frame made larger than MAX_MESSAGE_BYTES: too_large, delivered to nobody.
    fc.tuple(fc.constantFrom(...TYPES), fc.integer({ min: MAX_BYTES, max: 60_000 }), fc.constantFrom("a", "€", "😀", "\u0000", '"')).map(
      // (bytes per repetition as serialized inside a JSON string: the quotes do not repeat, escapes do)
      ([type, n, ch]) =>
        JSON.stringify({ type, to: "x", state: {}, data: ch.repeat(Math.ceil(n / (utf8.encode(JSON.stringify(ch)).byteLength - 2))) }),
    ),
    fc.integer({ min: MAX_BYTES - 40, max: MAX_BYTES + 40 }).map((n) => `{"type":"publish","data":"${"x".repeat(n)}","id":1}`),
  )
  .map(text("huge number or string"));

/** Every kind of hostile frame, weighted towards the cheap ones. */
export const hostileFrame: fc.Arbitrary<Hostile> = fc.oneof(
  { arbitrary: randomText, weight: 3 },
  { arbitrary: randomBytes, weight: 1 },
  { arbitrary: malformedJson, weight: 3 },
  { arbitrary: deeplyNested, weight: 1 },
  { arbitrary: wrongSchema, weight: 5 },
  { arbitrary: notAnObject, weight: 2 },
  { arbitrary: huge, weight: 1 },
);
