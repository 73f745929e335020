// What wrangler deploys: the Worker (src/worker/: auth, routes, HTTP) and the Durable Object
// classes it routes to (src/room/: one object per room, owning its sockets and state).
export { default } from "./worker/index";
export { Room } from "./room/room";
