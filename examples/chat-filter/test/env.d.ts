// Types `cloudflare:workers`' `env` and `exports` in the tests from this Worker itself.
declare namespace Cloudflare {
  interface GlobalProps {
    mainModule: typeof import("../src/index");
    durableNamespaces: "ChatRoom";
  }
  type WorkerEnv = import("../src/env").Env;
  // Declaration merging is how the pool's `env` gets this Worker's bindings: nothing to add.
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type
  interface Env extends WorkerEnv {}
}
