// Loads the OpenAPI v3 schemas the YAML editor checks against, through
// the backend as the user (part of the editor chunk): the discovery root
// once per cluster context, then one document per group version; each is
// self-contained (ObjectMeta and friends included), so one suffices for
// an object.
import * as api from "./api";
import { Schemas, type Spec } from "./schema";

type Root = Awaited<ReturnType<typeof api.openAPIRoot>>;
const roots = new Map<string, Promise<Root>>();
const docs = new Map<string, Promise<Schemas>>();

/** gvPath is the /openapi/v3 discovery key of apiVersion: api/v1, apis/apps/v1. */
export const gvPath = (apiVersion: string) => (apiVersion.includes("/") ? `apis/${apiVersion}` : `api/${apiVersion}`);

/** schemasFor resolves to the schemas of apiVersion's group version; it rejects with the reason when there are none. */
export function schemasFor(apiVersion: string): Promise<Schemas> {
  const cluster = api.currentCluster();
  const key = `${cluster}\n${apiVersion}`;
  let p = docs.get(key);
  if (!p) {
    let root = roots.get(cluster);
    if (!root) {
      root = api.openAPIRoot();
      roots.set(cluster, root);
      root.catch(() => roots.delete(cluster));
    }
    p = root.then(async (r) => {
      const entry = r.paths?.[gvPath(apiVersion)];
      if (!entry) throw new Error(`the API server publishes no OpenAPI v3 schema for ${apiVersion}`);
      return new Schemas([(await api.openAPIDoc(entry.serverRelativeURL)) as Spec]);
    });
    docs.set(key, p);
    p.catch(() => docs.delete(key));
  }
  return p;
}
