import { z } from 'zod';
import { classPolicySchema, flatKeyOf, sourceSpecSchema } from './spec.js';

/**
 * The populator's StorageClass keys as markdown tables, generated from the same zod schemas that
 * validate them (docs/populator.md), grouped as users meet them: common keys, then one table per
 * source type.
 */

export const SOURCE_KEY_MARKERS = {
  begin: '<!-- BEGIN GENERATED SOURCE KEYS: npm run docs:params -->',
  end: '<!-- END GENERATED SOURCE KEYS -->',
};

interface JsonProperty {
  type?: string | string[];
  description?: string;
  default?: unknown;
  docDefault?: string;
  enum?: unknown[];
  properties?: Record<string, JsonProperty>;
}

interface Row {
  path: string[];
  prop: JsonProperty;
}

const SOURCE_GROUPS = ['git', 'http', 's3'];

function leaves(properties: Record<string, JsonProperty>, parent: string[] = []): Row[] {
  return Object.entries(properties).flatMap(([key, prop]) =>
    prop.properties ? leaves(prop.properties, [...parent, key]) : [{ path: [...parent, key], prop }],
  );
}

const code = (value: unknown) => `\`${String(value)}\``;

function defaultCell(prop: JsonProperty): string {
  if (prop.docDefault !== undefined) return prop.docDefault;
  if (prop.default === undefined || prop.default === '') return '—';
  return code(prop.default);
}

/** `inAnnotation` false: a key only a StorageClass may set. */
function table(rows: Row[], inAnnotation = true): string {
  const lines = rows.map(({ path, prop }) => {
    const values = prop.enum ? ` One of: ${prop.enum.map(code).join(', ')}.` : '';
    const meaning = `${prop.description ?? ''}${values}`.replace(/\|/g, '\\|');
    const key = inAnnotation ? flatKeyOf(path) : path.join('.');
    const annotation = inAnnotation ? code(path.join('.')) : '—';
    return `| ${code(key)} | ${annotation} | ${meaning} | ${defaultCell(prop)} |`;
  });
  return [
    '| StorageClass key | annotation key | meaning | default |',
    '| --- | --- | --- | --- |',
    ...lines,
  ].join('\n');
}

function properties(schema: z.ZodType): Record<string, JsonProperty> {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as {
    properties: Record<string, JsonProperty>;
  };
  return json.properties;
}

export function sourceParameterDocs(): string {
  const rows = leaves(properties(sourceSpecSchema));
  const common = rows.filter((r) => !SOURCE_GROUPS.includes(r.path[0]!));
  const policy = leaves(properties(classPolicySchema));
  const sections = [
    `### Common keys\n\n${table(common)}`,
    `### Class policy\n\nOnly a StorageClass sets these; a PVC's annotation cannot.\n\n${table(policy, false)}`,
    ...SOURCE_GROUPS.map((group) => `### ${group}\n\n${table(rows.filter((r) => r.path[0] === group))}`),
  ];
  return `${sections.join('\n\n')}\n`;
}
