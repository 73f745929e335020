// @ts-check
// Type-aware lint: typescript-eslint's recommendedTypeChecked on every TypeScript file (each one checked against
// the tsconfig that owns it: the root one, or public/tsconfig.json for the demo page), ESLint's recommended set
// on the Node scripts. Formatting is Prettier's job (.prettierrc.json); nothing here is about layout.
import js from "@eslint/js";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", ".wrangler/", "artifacts/", "bench/results/", "public/app.js", "node_modules/"] },
  js.configs.recommended,
  {
    files: ["**/*.ts", "**/*.mts"],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // A deprecated API is a break waiting for the next major of zod, jose or the runtime's types.
      "@typescript-eslint/no-deprecated": "error",
      // A leading underscore names a parameter or binding kept for its position (a callback's signature, a rest split).
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", destructuredArrayIgnorePattern: "^_" }],
    },
  },
  {
    // The Worker and the Durable Object: workerd only logs an unhandled rejection, so a fire-and-forget promise
    // carries its own catch (or a reason why none is needed); `void` alone does not count as handling it.
    files: ["src/room/**/*.ts", "src/worker/**/*.ts"],
    rules: { "@typescript-eslint/no-floating-promises": ["error", { ignoreVoid: false }] },
  },
  {
    // Tests read what the wire and the tools hand back (JSON bodies, frames, wrangler's config) and let expect()
    // judge it: a wrong shape throws or fails the assertion, and no unchecked value reaches the product from here.
    files: ["test/**/*.ts"],
    rules: {
      "@typescript-eslint/no-unsafe-argument": "off",
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-call": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-unsafe-return": "off",
    },
  },
  {
    files: ["**/*.mjs", "eslint.config.js"],
    languageOptions: { globals: globals.node },
  },
);
