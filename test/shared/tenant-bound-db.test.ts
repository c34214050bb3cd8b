/**
 * Tenant predicate by construction (docs/architecture.md, invariants): every tenant-owned query of
 * edge/src/db goes through a repository bound to one tenant, `tenantX(db, tenantId)`, whose queries
 * are all built from the tenant it was opened for. This reads the modules with the TypeScript
 * compiler API and fails when an exported function takes a raw tenant id anywhere else: a
 * `tenantId` parameter (or a destructured one), or an object parameter with a `tenantId` property,
 * outside a bound factory — and when a function inside a factory takes a tenant id again.
 *
 * The exceptions are listed below, each with why.
 */
import fs from "node:fs";
import path from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const DB_DIR = path.resolve(import.meta.dirname, "../../edge/src/db");

/**
 * Cross-tenant by design ("file:function"): these take tenants as data because they serve many
 * tenants at once, never one tenant's request.
 */
const CROSS_TENANT: Record<string, string> = {
  // The hub's dispatch check of one flush's recipients, of many tenants, in one statement: every
  // (tenant, address) pair carries its own tenant, so a hit is never another tenant's.
  "suppression-lookup.ts:findSuppressed": "hub: one flush's (tenant, address) pairs",
};

/**
 * Not converted yet: still take a raw tenant id (each is a query of one tenant). Listed so that
 * nothing new joins them; remove an entry when its module gets a bound factory.
 */
const NOT_YET_BOUND: Record<string, string> = {};

/** The bound factories this checker must find (so that it cannot pass by finding nothing). */
const EXPECTED_FACTORIES = [
  "api-keys.ts:tenantApiKeys",
  "batches.ts:tenantBatches",
  "dashboard-logins.ts:tenantDashboardLogins",
  "domains.ts:tenantDomains",
  "images.ts:tenantImages",
  "messages.ts:tenantMessages",
  "sk-templates.ts:tenantSkTemplates",
  "stats.ts:tenantStats",
  "stats.ts:tenantStatsRebuild",
  "suppressions.ts:tenantSuppressions",
  "templates.ts:tenantTemplates",
];

type AnyFunction = ts.FunctionDeclaration | ts.ArrowFunction | ts.FunctionExpression | ts.MethodDeclaration;

const isFunctionLike = (n: ts.Node): n is AnyFunction =>
  ts.isFunctionDeclaration(n) ||
  ts.isArrowFunction(n) ||
  ts.isFunctionExpression(n) ||
  ts.isMethodDeclaration(n);

/** Does this type name a `tenantId` member (an object literal type, or an array of one)? */
function typeHasTenantId(type: ts.TypeNode | undefined): boolean {
  if (!type) return false;
  if (ts.isArrayTypeNode(type)) return typeHasTenantId(type.elementType);
  if (ts.isTypeOperatorNode(type)) return typeHasTenantId(type.type);
  if (ts.isUnionTypeNode(type) || ts.isIntersectionTypeNode(type)) return type.types.some(typeHasTenantId);
  if (ts.isTypeLiteralNode(type)) {
    return type.members.some(
      (m) => m.name !== undefined && ts.isIdentifier(m.name) && m.name.text === "tenantId",
    );
  }
  return false;
}

function bindingHasTenantId(name: ts.BindingName): boolean {
  if (ts.isIdentifier(name)) return name.text === "tenantId";
  return name.elements.some(
    (e) =>
      !ts.isOmittedExpression(e) &&
      ((e.propertyName !== undefined &&
        ts.isIdentifier(e.propertyName) &&
        e.propertyName.text === "tenantId") ||
        bindingHasTenantId(e.name)),
  );
}

/** Parameters of `fn` that carry a raw tenant id. */
const tenantParams = (fn: AnyFunction): string[] =>
  fn.parameters
    .filter((p) => bindingHasTenantId(p.name) || typeHasTenantId(p.type))
    .map((p) => p.name.getText());

const isExported = (n: ts.Node): boolean =>
  ts.canHaveModifiers(n) && (ts.getModifiers(n) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword);

/** A bound factory: `tenantX(<db or d1>, tenantId)`, nothing else. */
const isFactory = (name: string, fn: AnyFunction): boolean =>
  /^tenant[A-Z]\w*$/.test(name) &&
  fn.parameters.length === 2 &&
  ts.isIdentifier(fn.parameters[1]!.name) &&
  fn.parameters[1]!.name.text === "tenantId";

interface Finding {
  factories: string[];
  /** "file:function: why" */
  violations: string[];
}

function checkSource(file: string, text: string): Finding {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const out: Finding = { factories: [], violations: [] };
  const exported: [string, AnyFunction][] = [];
  for (const stmt of source.statements) {
    if (ts.isFunctionDeclaration(stmt) && stmt.name && isExported(stmt))
      exported.push([stmt.name.text, stmt]);
    if (ts.isVariableStatement(stmt) && isExported(stmt)) {
      for (const d of stmt.declarationList.declarations) {
        if (ts.isIdentifier(d.name) && d.initializer && isFunctionLike(d.initializer)) {
          exported.push([d.name.text, d.initializer]);
        }
      }
    }
  }
  for (const [name, fn] of exported) {
    const id = `${file}:${name}`;
    if (isFactory(name, fn)) {
      out.factories.push(id);
      // Inside a factory the tenant is bound: no inner function may take one again.
      const visit = (n: ts.Node): void => {
        if (isFunctionLike(n)) {
          const raw = tenantParams(n);
          if (raw.length > 0) {
            const inner = n.name && ts.isIdentifier(n.name) ? n.name.text : "(anonymous)";
            out.violations.push(`${id}: ${inner} takes ${raw.join(", ")} inside the bound factory`);
          }
        }
        ts.forEachChild(n, visit);
      };
      if (fn.body) ts.forEachChild(fn.body, visit);
      continue;
    }
    const raw = tenantParams(fn);
    if (raw.length > 0 && !(id in CROSS_TENANT) && !(id in NOT_YET_BOUND)) {
      out.violations.push(`${id}: takes ${raw.join(", ")} outside a bound factory tenantX(db, tenantId)`);
    }
  }
  return out;
}

const modules = fs
  .readdirSync(DB_DIR)
  .filter((f) => f.endsWith(".ts") && f !== "schema.ts")
  .sort();

describe("edge/src/db: tenant-owned queries only through bound repositories", () => {
  it("no exported function takes a raw tenant id outside tenantX(db, tenantId), except those listed", () => {
    const factories: string[] = [];
    const violations: string[] = [];
    for (const file of modules) {
      const found = checkSource(file, fs.readFileSync(path.join(DB_DIR, file), "utf8"));
      factories.push(...found.factories);
      violations.push(...found.violations);
    }
    expect(violations).toEqual([]);
    expect(factories).toEqual(expect.arrayContaining(EXPECTED_FACTORIES));
  });

  it("every exception still exists (a stale entry would hide nothing and should go)", () => {
    for (const id of [...Object.keys(CROSS_TENANT), ...Object.keys(NOT_YET_BOUND)]) {
      const [file, name] = id.split(":") as [string, string];
      const text = fs.readFileSync(path.join(DB_DIR, file), "utf8");
      expect(text, id).toMatch(new RegExp(`export (async )?function ${name}\\b`));
    }
  });

  it("the checker flags each way a raw tenant id can slip in", () => {
    const found = checkSource(
      "bad.ts",
      `
      export async function getThing(db: Db, tenantId: string, id: string) {}
      export const listThings = (db: Db, { tenantId }: { tenantId: string }) => [];
      export function thingsOf(db: Db, pairs: { tenantId: string; id: string }[]) {}
      export function byId(db: Db, id: string) {}
      export function tenantThings(db: Db, tenantId: string) {
        function again(other: string, tenantId: string) {}
        return { get: (id: string) => id, again };
      }
      export function tenantWrong(db: Db, tenant: string) {}
      `,
    );
    expect(found.factories).toEqual(["bad.ts:tenantThings"]);
    expect(found.violations).toEqual([
      "bad.ts:getThing: takes tenantId outside a bound factory tenantX(db, tenantId)",
      "bad.ts:listThings: takes { tenantId } outside a bound factory tenantX(db, tenantId)",
      "bad.ts:thingsOf: takes pairs outside a bound factory tenantX(db, tenantId)",
      "bad.ts:tenantThings: again takes tenantId inside the bound factory",
    ]);
  });
});
