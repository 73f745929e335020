// Types `cloudflare:workers` exports/env in the Workers-pool tests from the Worker itself.
declare namespace Cloudflare {
  interface GlobalProps {
    mainModule: typeof import("../src/index");
    durableNamespaces: "Room";
  }
  type WorkerEnv = import("../src/env").Env;
  interface Env extends WorkerEnv {
    TEST_PRIVATE_JWKS?: string;
  }
}
