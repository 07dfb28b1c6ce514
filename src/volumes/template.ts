import { invalidArgument } from '../rpc/errors.js';
import { PVC_NAME, PVC_NAMESPACE, PV_NAME } from '../backends/params.js';
import { assertSafeRelativePath } from './volume-id.js';

const VARIABLES: Record<string, string> = {
  'pvc.metadata.name': PVC_NAME,
  'pvc.metadata.namespace': PVC_NAMESPACE,
  'pv.metadata.name': PV_NAME,
};

/**
 * Expands a subDir template such as `${pvc.metadata.namespace}/${pvc.metadata.name}`. The volume
 * name stands in for the PV name when the CO sent none. The result must be a safe relative path.
 */
export function renderSubDir(
  template: string,
  volumeName: string,
  parameters: Record<string, string>,
): string {
  const rendered = template.replace(/\$\{([^}]*)\}/g, (_, variable: string) => {
    const key = VARIABLES[variable];
    if (!key) {
      throw invalidArgument(
        `parameter "subDir": unknown variable \${${variable}} (allowed: ${Object.keys(VARIABLES)
          .map((v) => `\${${v}}`)
          .join(', ')})`,
      );
    }
    const value = parameters[key] ?? (variable === 'pv.metadata.name' ? volumeName : undefined);
    if (value === undefined) {
      throw invalidArgument(
        `parameter "subDir" uses \${${variable}}, but CreateVolume carried no "${key}" (run external-provisioner with --extra-create-metadata)`,
      );
    }
    return value;
  });
  assertSafeRelativePath(rendered, `parameter "subDir" (expanded to "${rendered}")`);
  return rendered;
}
