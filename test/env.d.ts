// Types `cloudflare:workers` exports/env in the Workers-pool tests from the Worker itself.
declare namespace Cloudflare {
  interface GlobalProps {
    mainModule: typeof import("../src/index");
    durableNamespaces: "Room" | "FloorRoom";
  }
  interface Env extends import("../src/env").Env {}
}
