// The abuser of the flood suite, in its own process so its sending and its flood of error replies
// do not share an event loop with the clients whose latency the suite measures.
// Usage: node flooder.mjs <ws url> <frames per second> <duration ms>
// Sends publish frames at the given rate; when the room closes the connection it reconnects and
// goes on, until the duration is over. Prints one JSON line: what it sent and how each socket closed.
import WebSocket from "ws";

const [url, rateArg, durationArg] = process.argv.slice(2);
const rate = Number(rateArg);
const until = Date.now() + Number(durationArg);
const TICK_MS = 10;
const perTick = Math.max(1, Math.round((rate * TICK_MS) / 1000));
const out = { sent: 0, connections: 0, closes: {}, errors: {}, echoes: 0, pongs: 0, handshakeFailures: 0 };

function once() {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    let timer;
    let mine = false;
    ws.on("open", () => {
      out.connections++;
      timer = setInterval(() => {
        for (let i = 0; i < perTick && ws.readyState === WebSocket.OPEN; i++) {
          ws.send(`{"type":"publish","data":{"flood":${out.sent}}}`);
          out.sent++;
        }
        if (Date.now() > until && !mine) {
          mine = true;
          ws.close(1000);
        }
      }, TICK_MS);
    });
    ws.on("message", (data) => {
      const text = data.toString();
      if (text === "pong") return void out.pongs++;
      const parsed = JSON.parse(text);
      for (const f of Array.isArray(parsed) ? parsed : [parsed]) {
        if (f.type === "error") out.errors[f.code] = (out.errors[f.code] ?? 0) + 1;
        else if (f.type === "message" && f.data?.flood !== undefined) out.echoes++;
      }
    });
    ws.on("unexpected-response", (_req, res) => {
      out.handshakeFailures++;
      res.resume();
      resolve();
    });
    ws.on("error", () => {});
    ws.on("close", (code) => {
      clearInterval(timer);
      const key = mine ? "self" : code;
      out.closes[key] = (out.closes[key] ?? 0) + 1;
      resolve();
    });
  });
}

while (Date.now() < until) await once();
process.stdout.write(`${JSON.stringify(out)}\n`);
