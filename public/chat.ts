// The demo chat page, on the SDK only: join, history, live messages, presence with a typing
// indicator, and a status line with the reconnect countdown. Bundled to /app.js by
// scripts/build-demo.mjs. Tokens come from the dev-only /dev/token route (`npm run dev`).
import { RoomClient, RoomError, type MessageFrame, type StatusEvent } from "../src/client/index";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const ui = {
  join: $<HTMLFormElement>("join"),
  name: $<HTMLInputElement>("name"),
  room: $<HTMLInputElement>("room"),
  joinError: $("join-error"),
  chat: $("chat"),
  roomTitle: $("room-title"),
  status: $("status"),
  retry: $<HTMLButtonElement>("retry"),
  older: $<HTMLButtonElement>("older"),
  messages: $<HTMLOListElement>("messages"),
  pending: $<HTMLOListElement>("pending"),
  people: $<HTMLUListElement>("people"),
  peopleCount: $("people-count"),
  compose: $<HTMLFormElement>("compose"),
  text: $<HTMLInputElement>("text"),
  typing: $("typing"),
};

const TYPING_IDLE_MS = 3000;
const PAGE = 50;

// A link like /?room=lobby&name=ada joins at once; the name is remembered for next time.
const params = new URLSearchParams(location.search);
ui.name.value = params.get("name") ?? localStorage.getItem("edgerooms:name") ?? "";
ui.room.value = params.get("room") ?? ui.room.value;
ui.join.addEventListener("submit", (e) => {
  e.preventDefault();
  void join(ui.name.value.trim(), ui.room.value.trim());
});
if (params.get("name") && params.get("room")) void join(ui.name.value, ui.room.value);

async function devToken(user: string, room: string): Promise<string> {
  const res = await fetch(`/dev/token?${new URLSearchParams({ user, room })}`);
  if (!res.ok) throw new RoomError(res.status === 404 ? "not_found" : "unauthorized", `no dev token (${res.status})`);
  return ((await res.json()) as { token: string }).token;
}

async function join(name: string, room: string): Promise<void> {
  ui.joinError.textContent = "";
  try {
    await devToken(name, room); // fail on the form, not in the status line, when dev tokens are off
  } catch {
    ui.joinError.textContent = "Could not get a token. Is this `npm run dev` (DEV_TOKENS=true)?";
    return;
  }
  localStorage.setItem("edgerooms:name", name);
  history.replaceState(null, "", `?${new URLSearchParams({ room, name })}`);
  ui.join.hidden = true;
  ui.chat.hidden = false;
  ui.roomTitle.textContent = `#${room}`;
  document.title = `#${room} · edgerooms`;
  ui.text.focus();

  // A function, so every reconnect fetches a fresh token.
  const client = new RoomClient({ url: location.origin, room, token: () => devToken(name, room) });
  wire(client);
}

function wire(client: RoomClient): void {
  let oldest: number | undefined;

  client.on("status", (s) => showStatus(client, s));
  client.on("welcome", (w) => {
    // The first welcome, or one that could not resume: load what came before it.
    if (oldest === undefined) void loadHistory(client, w.seq + 1);
  });
  client.on("resync", (w) => {
    ui.messages.replaceChildren(notice("Reconnected; some messages may have been missed. Reloading…"));
    oldest = undefined;
    void loadHistory(client, w.seq + 1);
  });
  client.on("message", (m) => insertMessage(m, client.me?.id));
  client.on("delete", ({ seq }) => ui.messages.querySelector(`[data-seq="${seq}"]`)?.remove());
  client.on("presence", () => showPeople(client));
  client.on("error", (e) => ui.messages.append(notice(`Error: ${e.code}`)));

  async function loadHistory(c: RoomClient, before: number): Promise<void> {
    try {
      const page = await c.history({ before, limit: PAGE });
      for (const m of page.messages) insertMessage(m, c.me?.id);
      oldest = page.messages.at(-1)?.seq ?? before;
      ui.older.hidden = !page.more;
    } catch (err) {
      // Not fatal: history needs the `history` capability and a live connection.
      ui.messages.prepend(notice(`History unavailable (${(err as RoomError).code ?? err}).`));
      oldest = before;
    }
  }
  ui.older.addEventListener("click", () => {
    const keep = ui.messages.parentElement!.scrollHeight - ui.messages.parentElement!.scrollTop;
    void loadHistory(client, oldest ?? 1).then(() => {
      const box = ui.messages.parentElement!;
      box.scrollTop = box.scrollHeight - keep;
    });
  });

  ui.retry.addEventListener("click", () => client.reconnectNow());

  // Typing indicator through presence state, sent only when it changes (presence frames count
  // against the room's rate limit like any other).
  let typing = false;
  let idle: ReturnType<typeof setTimeout> | undefined;
  const setTyping = (now: boolean) => {
    clearTimeout(idle);
    if (now) idle = setTimeout(() => setTyping(false), TYPING_IDLE_MS);
    if (now !== typing) client.setPresence({ typing: (typing = now) });
  };
  ui.text.addEventListener("input", () => setTyping(ui.text.value.length > 0));

  ui.compose.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = ui.text.value.trim();
    if (!text) return;
    ui.text.value = "";
    setTyping(false);
    // Shown as waiting until its echo arrives as a message (then the log shows it) or it fails.
    const item = el("li", {}, `${text} — sending…`);
    ui.pending.append(item);
    client.publish({ text }).then(
      () => item.remove(),
      (err: RoomError) => {
        item.className = "failed";
        item.textContent = `${text} — not sent (${err.code})`;
      },
    );
  });
}

// ---- rendering -------------------------------------------------------------------------

/** Messages stay in seq order whether they come from history or live, in any interleaving. */
function insertMessage(m: MessageFrame, me: string | undefined): void {
  if (ui.messages.querySelector(`[data-seq="${m.seq}"]`)) return;
  const data = m.data as { text?: unknown } | null;
  const text = typeof data?.text === "string" ? data.text : JSON.stringify(m.data);
  const li = el("li", { "data-seq": String(m.seq), class: m.from.id === me ? "mine" : "" });
  li.append(
    el("span", { class: "who" }, m.from.name),
    el("span", {}, text),
    el(
      "time",
      { class: "when", datetime: new Date(m.ts).toISOString() },
      new Date(m.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
    ),
  );
  const after = [...ui.messages.querySelectorAll<HTMLElement>("[data-seq]")].find((x) => Number(x.dataset.seq) > m.seq);
  const box = ui.messages.parentElement!;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  ui.messages.insertBefore(li, after ?? null);
  if (atBottom && !after) box.scrollTop = box.scrollHeight;
}

function showPeople(client: RoomClient): void {
  const users = [...client.presence.values()].sort((a, b) => a.name.localeCompare(b.name));
  ui.people.replaceChildren(
    ...users.map((u) => {
      const typing = u.state.typing === true && u.id !== client.me?.id;
      const label = u.id === client.me?.id ? `${u.name} (you)` : u.name;
      return el("li", { class: typing ? "typing-now" : "", "data-user": u.id }, typing ? `${label}, typing` : label);
    }),
  );
  ui.peopleCount.textContent = `(${users.length})`;
  const typers = users.filter((u) => u.state.typing === true && u.id !== client.me?.id).map((u) => u.name);
  ui.typing.textContent = typers.length === 0 ? "" : typers.length === 1 ? `${typers[0]} is typing…` : `${typers.join(", ")} are typing…`;
}

let countdown: ReturnType<typeof setInterval> | undefined;
function showStatus(client: RoomClient, s: StatusEvent): void {
  clearInterval(countdown);
  ui.status.dataset.status = s.status;
  ui.retry.hidden = !(s.status === "reconnecting" && s.retryAt !== undefined);
  const pending = () => (client.pending > 0 ? ` · ${client.pending} waiting to send` : "");
  switch (s.status) {
    case "connecting":
      ui.status.textContent = "Connecting…";
      return;
    case "open":
      ui.status.textContent = `Connected as ${client.me?.name ?? "?"}`;
      return;
    case "closed":
      ui.status.textContent = s.reason === "closed" ? "Disconnected" : `Disconnected: ${s.reason} — reload the page to try again`;
      return;
    case "reconnecting": {
      if (s.retryAt === undefined) {
        ui.status.textContent = `Reconnecting…${pending()}`;
        return;
      }
      const retryAt = s.retryAt;
      // A live region: written only when the whole-second text changes, so it does not chatter.
      const tick = () => {
        const secs = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
        const text = `Connection lost. Reconnecting in ${secs} s…${pending()}`;
        if (ui.status.textContent !== text) ui.status.textContent = text;
      };
      tick();
      countdown = setInterval(tick, 250);
      return;
    }
  }
}

function notice(text: string): HTMLLIElement {
  return el("li", { class: "notice" }, text);
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string>, text?: string) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
