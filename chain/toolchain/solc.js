#!/usr/bin/env node
// Presents the npm `solc` package (solcjs, WebAssembly) with the slice of native solc's command line that
// py-solc-x and Brownie use, so that the Solidity toolchain installs from the npm registry alone:
//   solc --version                         -> "Version: 0.8.N+commit.XXXX..." on stdout
//   solc --standard-json [--allow-paths A,B] [--base-path P]   (input JSON on stdin, output JSON on stdout)
// Imports are read from the file system like native solc: relative to the base path (default: the
// working directory), and only from inside the base path or an allowed path.
"use strict";
const fs = require("fs");
const path = require("path");

function loadSolc() {
  // Resolve the package from the project's node_modules first, then from the usual search path.
  const projectRoot = path.resolve(__dirname, "..", "..");
  try {
    return require(require.resolve("solc", { paths: [projectRoot] }));
  } catch (err) {
    process.stderr.write("solc wrapper: the npm package 'solc' is missing; run `make setup`.\n");
    process.exit(2);
  }
}

function parseArgs(argv) {
  const opts = { allowPaths: [], basePath: process.cwd(), standardJson: false, version: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) fail(`option '${arg}' needs a value`);
      return argv[++i];
    };
    if (arg === "--version") opts.version = true;
    else if (arg === "--standard-json") opts.standardJson = true;
    else if (arg === "--allow-paths") opts.allowPaths.push(...value().split(",").filter(Boolean));
    else if (arg === "--base-path") opts.basePath = path.resolve(value());
    else if (arg === "-") continue;
    else {
      process.stderr.write(`unrecognised option '${arg}'\n`);
      process.exit(1);
    }
  }
  return opts;
}

function fail(message) {
  process.stderr.write(`Error: ${message}\n`);
  process.exit(1);
}

function within(file, dir) {
  const rel = path.relative(dir, file);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

function importReader(opts) {
  const roots = [opts.basePath, ...opts.allowPaths.map((p) => path.resolve(p))];
  return (importPath) => {
    const file = path.resolve(opts.basePath, importPath);
    if (!roots.some((root) => within(file, root))) {
      return { error: `${importPath} is outside the base path and the allowed paths` };
    }
    try {
      return { contents: fs.readFileSync(file, "utf8") };
    } catch (err) {
      return { error: `File not found: ${importPath}` };
    }
  };
}

function writeAndExit(text, code) {
  // Exiting right after a large write can cut stdout when it is a pipe; exit from the write callback.
  process.stdout.write(text, () => process.exit(code));
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const solc = loadSolc();
  if (opts.version) {
    return writeAndExit(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`, 0);
  }
  if (!opts.standardJson) fail("only --version and --standard-json are supported by this wrapper");
  const input = fs.readFileSync(0, "utf8");
  const output = solc.compile(input, { import: importReader(opts) });
  return writeAndExit(output + "\n", 0);
}

main();
