import { z } from 'zod';
import { glusterParamsSchema } from './glusterfs/index.js';
import { localParamsSchema } from './local/index.js';
import { nfsParamsSchema } from './nfs/index.js';

/** StorageClass parameter schemas per backend kind, in the order the docs list them. */
export const PARAMETER_SCHEMAS: { kind: string; schema: z.ZodObject }[] = [
  { kind: 'local', schema: localParamsSchema },
  { kind: 'nfs', schema: nfsParamsSchema },
  { kind: 'glusterfs', schema: glusterParamsSchema },
];

interface JsonProperty {
  description?: string;
  default?: unknown;
  enum?: unknown[];
  examples?: unknown[];
  type?: string;
}

const cell = (value: unknown) =>
  (value === undefined || value === '' ? '' : `\`${String(value)}\``).replace(/\|/g, '\\|');

/** A markdown table of one schema: name, meaning, example, mandatory, default. */
export function parameterTable(schema: z.ZodObject): string {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as {
    properties: Record<string, JsonProperty>;
    required?: string[];
  };
  const rows = Object.entries(json.properties).map(([key, prop]) => {
    const meaning = [prop.description ?? '', prop.enum ? `One of: ${prop.enum.map(cell).join(', ')}.` : '']
      .filter(Boolean)
      .join(' ');
    const mandatory = json.required?.includes(key) && prop.default === undefined ? 'yes' : 'no';
    return `| \`${key}\` | ${meaning.replace(/\|/g, '\\|')} | ${cell(prop.examples?.[0])} | ${mandatory} | ${cell(prop.default)} |`;
  });
  return [
    '| Name | Meaning | Example | Mandatory | Default |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}

export function parameterDocs(): string {
  return PARAMETER_SCHEMAS.map(({ kind, schema }) => `### \`${kind}\`\n\n${parameterTable(schema)}\n`).join(
    '\n',
  );
}

export const BEGIN_MARKER = '<!-- BEGIN GENERATED PARAMETERS: npm run docs:params -->';
export const END_MARKER = '<!-- END GENERATED PARAMETERS -->';

/** Replaces the generated section between the markers of a markdown document. */
export function replaceGenerated(text: string, generated: string): string {
  const start = text.indexOf(BEGIN_MARKER);
  const end = text.indexOf(END_MARKER);
  if (start < 0 || end < start) throw new Error('generated-parameter markers not found');
  return `${text.slice(0, start + BEGIN_MARKER.length)}\n\n${generated}\n${text.slice(end)}`;
}
