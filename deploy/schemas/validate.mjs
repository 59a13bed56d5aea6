// Checks Kubernetes objects against published schemas; run by deploy/check.py, which installs
// this folder's package.json (npm ci) into .tools/deploy-schemas/ and runs this file there.
//
//   node validate.mjs OBJECTS.json     # [{"where": "deploy/istio/x.yaml#1", "doc": {...}}, ...]
//
// Prints one JSON array: for each object {where, apiVersion, kind, schema, status, errors}, status
// being "valid", "invalid" or "no-schema" (no package below ships that kind's schema).
//
// Two checks per object whose kind a package ships:
// 1. the JSON Schema validator kubernetes-models compiled from the published schema
//    (@kubernetes-models/istio: Istio's CRDs, crd-all.gen.yaml of Istio 1.29.2;
//    @kubernetes-models/gateway-api: the Gateway API Go types), as `kubectl apply` would
//    validate it, minus the CEL rules (x-kubernetes-validations) no JSON Schema tool runs;
// 2. unknown fields: the same packages' TypeScript declarations type the object, and the
//    TypeScript compiler's excess-property check rejects any field the schema does not name
//    (the JSON Schemas allow extra fields; the API server would prune or refuse them).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import ts from "typescript";

const here = path.dirname(new URL(import.meta.url).pathname);
const objects = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));

// apiVersion -> the package whose models hold it ("<pkg>/<apiVersion>/<Kind>").
function modelPath(apiVersion, kind) {
  const group = apiVersion.split("/")[0];
  if (group.endsWith(".istio.io")) return `@kubernetes-models/istio/${apiVersion}/${kind}`;
  if (group === "gateway.networking.k8s.io") return `@kubernetes-models/gateway-api/${apiVersion}/${kind}`;
  return null;
}

const require = createRequire(path.join(here, "package.json"));
function packageVersion(name) {
  return JSON.parse(fs.readFileSync(require.resolve(`${name}/package.json`), "utf8")).version;
}

const results = [];
const typed = [];  // [index in results, import path, interface name]
for (const { where, doc } of objects) {
  const apiVersion = doc?.apiVersion ?? "", kind = doc?.kind ?? "";
  const result = { where, apiVersion, kind, schema: null, status: "no-schema", errors: [] };
  results.push(result);
  const modulePath = apiVersion && kind ? modelPath(apiVersion, kind) : null;
  if (!modulePath) continue;
  let model;
  try {
    model = await import(modulePath);
  } catch {
    continue;  // a kind the package does not ship
  }
  const pkg = modulePath.split("/").slice(0, 2).join("/");
  result.schema = `${pkg}@${packageVersion(pkg)}`;
  try {
    new model[kind](doc).validate();
    result.status = "valid";
  } catch (e) {
    result.status = "invalid";
    result.errors.push(`schema: ${e.message}`);
  }
  typed.push([results.length - 1, modulePath, `I${kind}`]);
}

// The unknown-field check: one TypeScript file typing every object, compiled without output.
if (typed.length) {
  const lines = [];
  const spans = [];  // [first line, last line, result index]
  typed.forEach(([i, modulePath, iface], n) => lines.push(`import type { ${iface} as T${n} } from "${modulePath}";`));
  typed.forEach(([i], n) => {
    const body = JSON.stringify(objects[i].doc, null, 2).split("\n");
    const first = lines.length;
    lines.push(`export const object${n}: T${n} = ${body[0]}`, ...body.slice(1));
    lines[lines.length - 1] += ";";
    spans.push([first, lines.length - 1, i]);
  });
  const file = path.join(here, "objects.check.ts");
  fs.writeFileSync(file, lines.join("\n") + "\n");
  const program = ts.createProgram([file], {
    strict: true, noEmit: true, skipLibCheck: true, types: [],
    module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler,
    target: ts.ScriptTarget.ES2022,
  });
  for (const d of ts.getPreEmitDiagnostics(program)) {
    let message = ts.flattenDiagnosticMessageText(d.messageText, " ");
    const unknown = message.match(/^Object literal may only specify known properties, and '"?([^"']+)"?' does not exist/);
    if (unknown) message = `unknown field "${unknown[1]}"`;
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    const span = spans.find(([a, b]) => line >= a && line <= b);
    if (span) {
      const at = d.file.text.split("\n").slice(span[0], line + 1);
      const field = (at[at.length - 1].match(/"([^"]+)":/) || [])[1];
      results[span[2]].status = "invalid";
      results[span[2]].errors.push(`types: ${message}${field && !unknown ? ` (at "${field}")` : ""}`);
    } else {
      // An import that does not resolve, or the like: the check itself is broken.
      console.error(`validate.mjs: ${message}`);
      process.exitCode = 2;
    }
  }
}
console.log(JSON.stringify(results, null, 2));
