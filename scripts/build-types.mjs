#!/usr/bin/env node
// The SDK's declarations for the package's `./client` export, in dist/types/. tsc emits them for
// src/client (tsconfig.client.json), with two changes a consumer needs:
// - protocol.d.ts is not tsc's (that one is zod schemas, so a consumer would need zod to
//   type-check): each exported type of src/protocol.ts is written out as the plain type the
//   schema infers, its docs kept. The SDK imports only types from there, so nothing is lost.
// - relative imports get their `.js`, which Node ESM resolution (nodenext) requires.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const outDir = join(root, "dist/types");
const protocolSource = join(root, "src/protocol.ts");
const protocolOut = join(outDir, "protocol.d.ts");

const config = ts.getParsedCommandLineOfConfigFile(
  join(root, "tsconfig.client.json"),
  {},
  {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => fail([d]),
  },
);
const program = ts.createProgram({ rootNames: config.fileNames, options: config.options });
const checker = program.getTypeChecker();

function fail(diagnostics) {
  const host = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => "\n" };
  const format = process.stdout.isTTY ? ts.formatDiagnosticsWithColorAndContext : ts.formatDiagnostics;
  throw new Error(format(diagnostics, host));
}

const errors = ts.getPreEmitDiagnostics(program);
if (errors.length > 0) fail(errors);

rmSync(outDir, { recursive: true, force: true });
const written = new Map();
const emitted = program.emit(
  undefined,
  (file, text) => {
    if (file !== protocolOut) written.set(file, withJsExtensions(text));
  },
  undefined,
  true,
);
if (emitted.diagnostics.length > 0) fail(emitted.diagnostics);
written.set(protocolOut, protocolTypes(importedFromProtocol([...written.values()])));

// A consumer type-checks these without zod installed: no file may name it, and they must check
// on their own (no zod, no runtime's types beyond a browser's and an ES library).
for (const [file, text] of written) {
  if (/["']zod["']|\bz\.\w/.test(text)) throw new Error(`${file} still refers to zod`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
}
const check = ts.createProgram({
  rootNames: [...written.keys()],
  options: {
    strict: true,
    noEmit: true,
    skipLibCheck: false,
    types: [],
    lib: ["lib.es2023.d.ts", "lib.dom.d.ts"],
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
  },
});
const checkErrors = ts.getPreEmitDiagnostics(check);
if (checkErrors.length > 0) fail(checkErrors);

/** `from "./x"` and `import("../x")` → with `.js`. */
function withJsExtensions(text) {
  return text.replace(/(\bfrom\s+|\bimport\(\s*)(["'])(\.\.?\/[^"']*?)(?<!\.js)\2/g, "$1$2$3.js$2");
}

/** The names the emitted declarations import (or re-export) from ../protocol.js. */
function importedFromProtocol(texts) {
  const names = new Set();
  for (const text of texts) {
    const lists = text.matchAll(/(?:import|export)(?:\s+type)?\s*\{([^}]*)\}\s*from\s*["']\.\.\/protocol\.js["']/g);
    for (const [, list] of lists) {
      for (const item of list.split(",")) {
        const name = item
          .trim()
          .replace(/^type\s+/, "")
          .split(/\s+as\s+/)[0];
        if (name) names.add(name);
      }
    }
    for (const [, name] of text.matchAll(/import\(["']\.\.\/protocol\.js["']\)\.(\w+)/g)) names.add(name);
  }
  return names;
}

/** The wanted types of src/protocol.ts, and those they name, as the plain types they stand for. */
function protocolTypes(wanted) {
  const source = program.getSourceFile(protocolSource);
  if (!source) throw new Error("src/protocol.ts is not part of the SDK's program");
  const exports = new Map(checker.getExportsOfModule(checker.getSymbolAtLocation(source)).map((s) => [s.name, s]));
  const printer = ts.createPrinter();
  const flags = ts.NodeBuilderFlags.NoTruncation | ts.NodeBuilderFlags.IgnoreErrors | ts.NodeBuilderFlags.MultilineObjectLiterals;
  // InTypeAlias at the top, so an alias prints what it stands for rather than its own name.
  const print = (type, top) =>
    printer.printNode(ts.EmitHint.Unspecified, checker.typeToTypeNode(type, source, top ? flags | ts.NodeBuilderFlags.InTypeAlias : flags), source);
  const doc = (symbol, indent) => {
    const text = ts.displayPartsToString(symbol.getDocumentationComment(checker));
    if (!text) return "";
    const lines = text.split("\n");
    return lines.length === 1
      ? `${indent}/** ${text} */\n`
      : `${indent}/**\n${lines.map((l) => `${indent} * ${l}`.trimEnd()).join("\n")}\n${indent} */\n`;
  };

  const isType = (symbol) => symbol !== undefined && (symbol.flags & (ts.SymbolFlags.TypeAlias | ts.SymbolFlags.Interface)) !== 0;

  const blocks = [];
  const queue = [...wanted];
  const done = new Set();
  while (queue.length > 0) {
    const name = queue.shift();
    if (done.has(name)) continue;
    done.add(name);
    const symbol = exports.get(name);
    if (!isType(symbol)) {
      throw new Error(`the SDK imports ${name} from src/protocol.ts, which is not a type: the bundle would pull in zod`);
    }
    const type = checker.getDeclaredTypeOfSymbol(symbol);
    let block;
    if (type.isUnion() || type.isLiteral() || !(type.flags & ts.TypeFlags.Object)) {
      block = `${doc(symbol, "")}export type ${name} = ${print(type, true)};`;
    } else {
      // Objects property by property, so each field keeps its doc comment.
      const props = checker.getPropertiesOfType(type).map((prop) => {
        const key = /^[A-Za-z_$][\w$]*$/.test(prop.name) ? prop.name : JSON.stringify(prop.name);
        const optional = prop.flags & ts.SymbolFlags.Optional ? "?" : "";
        const propType = print(checker.getTypeOfSymbol(prop), false).replace(/\n/g, "\n    ");
        return `${doc(prop, "    ")}    ${key}${optional}: ${propType};`;
      });
      block = `${doc(symbol, "")}export interface ${name} {\n${props.join("\n")}\n}`;
    }
    blocks.push(block);
    // A type printed by name (an interface's field declared with an alias) must be here too.
    for (const [ref] of block.matchAll(/\b[A-Z]\w*\b/g)) if (isType(exports.get(ref)) && !done.has(ref)) queue.push(ref);
  }
  return [
    "// Generated by scripts/build-types.mjs from the zod schemas in src/protocol.ts: the wire types",
    "// the SDK uses, as plain TypeScript, so its declarations need no zod.",
    "",
    blocks.join("\n\n"),
    "",
  ].join("\n");
}
