import { credentials, status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { rpc } from '../../src/cli/csi-client.js';
import { loadCsi } from '../../src/rpc/proto.js';
import { callByName, codeOf, describeEachFixture } from './harness.js';

// GetPluginInfo.name: domain name notation, at most 63 characters, alphanumeric at both ends,
// only alphanumerics, dashes and dots between.
const PLUGIN_NAME = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$/;

describe('conformance: Identity service', function () {
  describeEachFixture((session) => {
    it('GetPluginInfo returns a domain-like name and a non-empty vendor_version', async () => {
      const info = await rpc(session.driver.identity, 'GetPluginInfo', {});
      assert.match(info.name, PLUGIN_NAME);
      assert.ok(info.name.includes('.'), `name "${info.name}" is not in domain name notation`);
      assert.ok(!/\.\.|\.-|-\./.test(info.name), `name "${info.name}" has an empty or dash-edged label`);
      assert.equal(info.name, 'csi.sharedvolume.io');
      assert.ok(info.vendor_version.length > 0, 'vendor_version is required');
    });

    it('GetPluginCapabilities advertises CONTROLLER_SERVICE and only known capabilities', async () => {
      const { capabilities } = await rpc(session.driver.identity, 'GetPluginCapabilities', {});
      const services = capabilities.map((c) => c.service?.type);
      assert.ok(services.includes('CONTROLLER_SERVICE'), `capabilities: ${JSON.stringify(capabilities)}`);
      for (const cap of capabilities) {
        assert.ok(cap.type !== undefined, 'a capability without a type');
        assert.notEqual(cap.service?.type ?? cap.volume_expansion?.type, 'UNKNOWN');
      }
      // No topology was configured, so the plugin must not claim accessibility constraints.
      assert.ok(!services.includes('VOLUME_ACCESSIBILITY_CONSTRAINTS'));
    });

    it('a service that is not advertised (GroupController) answers UNIMPLEMENTED', async () => {
      const { capabilities } = await rpc(session.driver.identity, 'GetPluginCapabilities', {});
      assert.ok(!capabilities.some((c) => c.service?.type === 'GROUP_CONTROLLER_SERVICE'));
      const GroupController = loadCsi().csi.v1.GroupController;
      const client = new GroupController(`unix:${session.driver.socket}`, credentials.createInsecure());
      try {
        for (const method of [
          'GroupControllerGetCapabilities',
          'CreateVolumeGroupSnapshot',
          'GetVolumeGroupSnapshot',
        ]) {
          assert.equal(status[await codeOf(callByName(client, method))], 'UNIMPLEMENTED', method);
        }
      } finally {
        client.close();
      }
    });

    it('Probe reports ready', async () => {
      const probe = await rpc(session.driver.identity, 'Probe', {});
      assert.equal(probe.ready?.value, true);
    });
  });
});
