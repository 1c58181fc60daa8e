// Validates custom resources against the CRD schemas that the @kubernetes-models packages compile
// from Argo CD's and Prometheus Operator's released CRDs.
// stdin: a JSON list of objects; stdout: a JSON list of "<kind>/<name>: <problem>"; run from the
// folder whose node_modules holds the packages.
//
// A CRD schema does not forbid unknown fields: the API server drops them, so a misspelt `selfheal`
// would vanish without a word. The validator reads every field its schema declares, so a field of
// an object it entered and never read, nor listed as a map, is one the schema does not know.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const PACKAGES = {
  "argoproj.io": "@kubernetes-models/argo-cd",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
  "keda.sh": "@kubernetes-models/keda",
};
// Argo Rollouts shares Argo CD's API group: its kinds come from their own package.
const ROLLOUTS = new Set(["Rollout", "AnalysisTemplate", "ClusterAnalysisTemplate", "AnalysisRun", "Experiment"]);
// The packages' compiled validators lose every property named `description` (their generator strips
// the schema's descriptions, AppProject's spec.description with them): never report it.
const UNCHECKED = new Set(["description"]);
const resolve = createRequire(path.join(process.cwd(), "package.json")).resolve;

async function modelClass(apiVersion, kind) {
  const [group, version] = apiVersion.split("/");
  const pkg = group === "argoproj.io" && ROLLOUTS.has(kind) ? "@kubernetes-models/argo-rollouts" : PACKAGES[group];
  if (!pkg) return null;
  const root = path.dirname(resolve(`${pkg}/package.json`));
  try {
    const module = await import(pathToFileURL(path.join(root, group, version, `${kind}.js`)));
    return module[kind] ?? module.default?.[kind]; // the CommonJS packages export through default
  } catch {
    return null;
  }
}

// Wraps value so that every object the validator looks into records what it read.
function watched(value, where, nodes) {
  if (value === null || typeof value !== "object") return value;
  let node = nodes.get(value);
  if (node) return node.proxy;
  node = { where, value, entered: false, listed: false, read: new Set() };
  nodes.set(value, node);
  node.proxy = new Proxy(value, {
    get(target, key) {
      node.entered = true;
      if (typeof key !== "string") return Reflect.get(target, key);
      node.read.add(key);
      const child = Reflect.get(target, key);
      const path = where ? `${where}.${key}` : key;
      return Object.hasOwn(target, key) ? watched(child, path, nodes) : child;
    },
    has(target, key) {
      node.entered = true;
      node.read.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      node.entered = true;
      node.listed = true;
      return Reflect.ownKeys(target);
    },
    getOwnPropertyDescriptor(target, key) {
      node.read.add(key);
      return Reflect.getOwnPropertyDescriptor(target, key);
    },
  });
  return node.proxy;
}

const problems = [];
for (const obj of JSON.parse(readFileSync(0, "utf8"))) {
  const name = `${obj.kind}/${obj.metadata?.name}`;
  const Model = await modelClass(obj.apiVersion, obj.kind);
  if (!Model) {
    problems.push(`${name}: no CRD schema for ${obj.apiVersion}`);
    continue;
  }
  const nodes = new Map();
  try {
    Model.prototype.validate.call(watched(obj, "", nodes));
  } catch (error) {
    problems.push(`${name}: ${error.message}`);
    continue;
  }
  for (const node of nodes.values()) {
    if (!node.entered || node.listed || Array.isArray(node.value)) continue;
    for (const key of Object.keys(node.value)) {
      if (node.read.has(key) || UNCHECKED.has(key)) continue;
      problems.push(`${name}: unknown field ${node.where ? `${node.where}.` : ""}${key}`);
    }
  }
}
process.stdout.write(JSON.stringify(problems));
