#!/usr/bin/env node
// The package's declarations, in dist/types/: the SDK's for `./client` (tsconfig.client.json,
// src/client) and the rooms' for `./server` (tsconfig.server.json, src/server/index.ts and what
// it reaches). tsc emits them, with two changes a consumer needs:
// - no file names zod. tsc's declarations of a module with zod schemas (src/protocol.ts,
//   src/config.ts, …) spell the schemas' types out as zod's, so a consumer would need zod to
//   type-check. In each such file every type that names zod is written out as the plain type the
//   checker infers, its docs kept, and the schemas (values no public type needs) are dropped.
// - relative imports get their `.js`, which Node ESM resolution (nodenext) requires.
// Both trees share files (protocol.d.ts): each must come out the same from either program. Each
// tree is then checked on its own, as a consumer would: strict, skipLibCheck off, no zod or jose,
// and only its runtime's types (a browser's and an ES library for the SDK, the Workers' for the
// server); files no entry point reaches are not shipped.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const outDir = join(root, "dist/types");
process.chdir(root); // `types` entries resolve from here

const TREES = [
  { name: "client", tsconfig: "tsconfig.client.json", check: { types: [], lib: ["lib.es2023.d.ts", "lib.dom.d.ts"] } },
  { name: "server", tsconfig: "tsconfig.server.json", check: { types: ["@cloudflare/workers-types"], lib: ["lib.es2023.d.ts"] } },
];
const NAMES_ZOD = /["']zod["']|\bz\.\w/;

function fail(diagnostics) {
  const host = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => "\n" };
  const format = process.stdout.isTTY ? ts.formatDiagnosticsWithColorAndContext : ts.formatDiagnostics;
  throw new Error(format(diagnostics, host));
}

/** Every file of every tree, path → text; and each tree's entry points, to check it from. */
const written = new Map();
const entries = new Map();
for (const tree of TREES) {
  const config = ts.getParsedCommandLineOfConfigFile(
    join(root, tree.tsconfig),
    {},
    { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => fail([d]) },
  );
  const program = ts.createProgram({ rootNames: config.fileNames, options: config.options });
  const errors = ts.getPreEmitDiagnostics(program);
  if (errors.length > 0) fail(errors);
  const files = new Map();
  const emitted = program.emit(undefined, (file, text) => files.set(file, withJsExtensions(text)), undefined, true);
  if (emitted.diagnostics.length > 0) fail(emitted.diagnostics);
  for (const [file, text] of files) {
    const out = NAMES_ZOD.test(text) ? withoutZod(program, file, text) : text;
    const before = written.get(file);
    if (before !== undefined && before !== out) throw new Error(`${relative(root, file)} comes out differently for ${tree.name}`);
    written.set(file, out);
  }
  entries.set(
    tree,
    config.fileNames.map((f) => join(outDir, relative(join(root, "src"), f)).replace(/\.ts$/, ".d.ts")),
  );
}

rmSync(outDir, { recursive: true, force: true });
for (const [file, text] of written) {
  if (NAMES_ZOD.test(text)) throw new Error(`${file} still refers to zod`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
}
// As a consumer type-checks them, each tree on its own, under Node ESM resolution (the strictest:
// bundler resolution accepts whatever it does; test/e2e/package.test.ts and server-package.test.ts
// check both from the tarball, and arethetypeswrong both resolutions).
const reached = new Set();
for (const tree of TREES) {
  const check = ts.createProgram({
    rootNames: entries.get(tree),
    options: {
      strict: true,
      noEmit: true,
      skipLibCheck: false,
      target: ts.ScriptTarget.ES2022,
      ...tree.check,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
    },
  });
  const checkErrors = ts.getPreEmitDiagnostics(check);
  if (checkErrors.length > 0) fail(checkErrors);
  const dependency = check.getSourceFiles().find((f) => /node_modules\/(zod|jose)\//.test(f.fileName));
  if (dependency) throw new Error(`the ${tree.name} declarations reach ${dependency.fileName}`);
  for (const f of check.getSourceFiles()) reached.add(f.fileName);
}
// A module no public type leads to (the Worker's CORS helper, say) has nothing to declare.
for (const file of written.keys()) if (!reached.has(file)) rmSync(file);

/** `from "./x"` and `import("../x")` → with `.js`. */
function withJsExtensions(text) {
  return text.replace(/(\bfrom\s+|\bimport\(\s*)(["'])(\.\.?\/[^"']*?)(?<!\.js)\2/g, "$1$2$3.js$2");
}

/**
 * tsc's declarations `text` of one module (emitted as `file`), with no zod: each type alias or
 * interface member that names zod becomes the plain type the checker infers for it, declared
 * values that name zod (the schemas) go, and so do the imports nothing uses any more. Anything
 * else that names zod (a function's or a class's signature) is an error: its source must say
 * what it means in plain types.
 */
function withoutZod(program, file, text) {
  const checker = program.getTypeChecker();
  const sourcePath = join(root, "src", relative(outDir, file)).replace(/\.d\.ts$/, ".ts");
  const source = program.getSourceFile(sourcePath);
  if (!source) throw new Error(`no source for ${file}`);
  const where = relative(root, sourcePath);
  const printer = ts.createPrinter();
  const flags = ts.NodeBuilderFlags.NoTruncation | ts.NodeBuilderFlags.IgnoreErrors | ts.NodeBuilderFlags.MultilineObjectLiterals;
  // InTypeAlias at the top, so an alias prints what it stands for rather than its own name.
  const print = (type, top) =>
    printer.printNode(ts.EmitHint.Unspecified, checker.typeToTypeNode(type, source, top ? flags | ts.NodeBuilderFlags.InTypeAlias : flags), source);
  const doc = (symbol, indent) => {
    const comment = ts.displayPartsToString(symbol.getDocumentationComment(checker));
    if (!comment) return "";
    const lines = comment.split("\n");
    return lines.length === 1
      ? `${indent}/** ${comment} */\n`
      : `${indent}/**\n${lines.map((l) => `${indent} * ${l}`.trimEnd()).join("\n")}\n${indent} */\n`;
  };
  const key = (name) => (/^[A-Za-z_$][\w$]*$/.test(name) ? name : JSON.stringify(name));
  const property = (prop) => {
    const optional = prop.flags & ts.SymbolFlags.Optional ? "?" : "";
    const type = print(checker.getTypeOfSymbol(prop), false).replace(/\n/g, "\n    ");
    return `${doc(prop, "    ")}    ${key(prop.name)}${optional}: ${type};`;
  };
  /** The source's type alias or interface `name` (exported or not). */
  const declared = (name) => {
    const node = source.statements.find((s) => (ts.isTypeAliasDeclaration(s) || ts.isInterfaceDeclaration(s)) && s.name.text === name);
    if (!node) throw new Error(`${where}: no type ${name} to write out`);
    return checker.getSymbolAtLocation(node.name);
  };
  /** A type alias's plain form: an object's (or an intersection of objects') property by property, so each keeps its doc. */
  const plainAlias = (name) => {
    const type = checker.getDeclaredTypeOfSymbol(declared(name));
    const parts = type.isIntersection() ? type.types : [type];
    const plainObject = parts.every(
      (t) =>
        t.flags & ts.TypeFlags.Object &&
        checker.getSignaturesOfType(t, ts.SignatureKind.Call).length === 0 &&
        checker.getSignaturesOfType(t, ts.SignatureKind.Construct).length === 0 &&
        checker.getIndexInfosOfType(t).length === 0,
    );
    if (!plainObject) return print(type, true);
    return `{\n${checker.getPropertiesOfType(type).map(property).join("\n")}\n}`;
  };

  const dts = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const kept = [];
  const imports = [];
  for (const statement of dts.statements) {
    const full = statement.getFullText();
    const leading = full.slice(0, statement.getStart() - statement.getFullStart());
    if (ts.isImportDeclaration(statement)) {
      if (statement.moduleSpecifier.text !== "zod") imports.push(statement);
      continue;
    }
    if (!NAMES_ZOD.test(full)) {
      kept.push(full);
    } else if (ts.isVariableStatement(statement)) {
      // A schema: the JavaScript keeps it, the declarations need only the types inferred from it.
    } else if (ts.isTypeAliasDeclaration(statement)) {
      if (statement.typeParameters) throw new Error(`${where}: generic type ${statement.name.text} names zod`);
      const exported = statement.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword) ? "export " : "";
      kept.push(`${leading}${exported}type ${statement.name.text} = ${plainAlias(statement.name.text)};`);
    } else if (ts.isInterfaceDeclaration(statement)) {
      // Member by member: only those that name zod are rewritten, as the checker types them.
      const type = checker.getDeclaredTypeOfSymbol(declared(statement.name.text));
      let body = full;
      for (const member of [...statement.members].reverse()) {
        if (!NAMES_ZOD.test(member.getText())) continue;
        if (!ts.isPropertySignature(member) || !member.type)
          throw new Error(`${where}: ${statement.name.text} has a member naming zod that is not a property`);
        // The type as declared (an optional member's without the `undefined` the checker adds).
        const declaration = checker.getPropertyOfType(type, member.name.getText())?.declarations?.find((d) => ts.isPropertySignature(d) && d.type);
        if (!declaration) throw new Error(`${where}: no declared type for ${statement.name.text}.${member.name.getText()}`);
        const printed = print(checker.getTypeFromTypeNode(declaration.type), false);
        const start = member.type.getStart() - statement.getFullStart();
        body = `${body.slice(0, start)}${printed}${body.slice(member.type.end - statement.getFullStart())}`;
      }
      kept.push(body);
    } else {
      throw new Error(`${where}: a declaration that is no type or schema names zod:\n${statement.getText()}`);
    }
  }
  // Imports, less the names nothing left uses.
  const rest = kept.join("");
  const used = (name) => new RegExp(`(?<![\\w$.])${name.replace(/\$/g, "\\$")}(?![\\w$])`).test(rest);
  const importLines = imports.flatMap((statement) => {
    const bindings = statement.importClause?.namedBindings;
    if (!statement.importClause || statement.importClause.name || !bindings || !ts.isNamedImports(bindings)) return [statement.getText()];
    const names = bindings.elements.filter((e) => used(e.name.text));
    if (names.length === 0) return [];
    const typeOnly = statement.importClause.isTypeOnly ? "type " : "";
    return [`import ${typeOnly}{ ${names.map((e) => e.getText()).join(", ")} } from ${statement.moduleSpecifier.getText()};`];
  });
  return `${[...importLines, rest.replace(/^\n+/, "")].join("\n").trimEnd()}\n`;
}
