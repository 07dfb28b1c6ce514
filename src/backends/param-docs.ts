import { z } from 'zod';
import { glusterParamsSchema } from './glusterfs/index.js';
import { localParamsSchema } from './local/index.js';
import { nfsParamsSchema } from './nfs/index.js';

/**
 * StorageClass parameter schemas per backend kind, in the order the docs list them, each with what
 * happens to a PVC's requested size there (docs/capacity.md has the details).
 */
export const PARAMETER_SCHEMAS: { kind: string; schema: z.ZodObject; capacity: string }[] = [
  {
    kind: 'local',
    schema: localParamsSchema,
    capacity:
      'enforced when the root is on btrfs with quota enabled (each volume is a subvolume with a qgroup limit; writes past it fail with EDQUOT); on any other file system recorded and reported, **not enforced**.',
  },
  {
    kind: 'nfs',
    schema: nfsParamsSchema,
    capacity: 'recorded and reported, **not enforced**: NFS has no per-directory quota the driver can set.',
  },
  {
    kind: 'glusterfs',
    schema: glusterParamsSchema,
    capacity:
      'enforced with a hard directory quota (instance setting `quota: true`, the default); writes past it fail with EDQUOT.',
  },
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
  return PARAMETER_SCHEMAS.map(
    ({ kind, schema, capacity }) =>
      `### \`${kind}\`\n\nCapacity: ${capacity} Expansion raises it the same way.\n\n${parameterTable(schema)}\n`,
  ).join('\n');
}

export interface Markers {
  begin: string;
  end: string;
}

export const PARAMETER_MARKERS: Markers = {
  begin: '<!-- BEGIN GENERATED PARAMETERS: npm run docs:params -->',
  end: '<!-- END GENERATED PARAMETERS -->',
};

/** Replaces the generated section between the markers of a markdown document. */
export function replaceGenerated(text: string, generated: string, markers = PARAMETER_MARKERS): string {
  const start = text.indexOf(markers.begin);
  const end = text.indexOf(markers.end);
  if (start < 0 || end < start) throw new Error(`markers not found: ${markers.begin}`);
  return `${text.slice(0, start + markers.begin.length)}\n\n${generated}\n${text.slice(end)}`;
}
