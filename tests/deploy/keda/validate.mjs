// Validate KEDA objects against KEDA's CRD models (@kubernetes-models/keda).
// Reads a JSON array of objects on stdin; prints one JSON line per object:
// {"kind", "name", "errors": [...]} with an empty list for a valid object. Exits 1 on any error.
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";

const models = { ScaledObject, TriggerAuthentication };
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
let failed = false;
for (const object of JSON.parse(Buffer.concat(chunks).toString("utf8"))) {
  const Model = models[object.kind];
  let errors = [];
  if (Model === undefined) {
    errors = [`no KEDA model for kind ${object.kind}`];
  } else {
    try {
      new Model(object).validate();
    } catch (error) {
      errors = [String(error.message ?? error)];
    }
  }
  failed ||= errors.length > 0;
  console.log(JSON.stringify({ kind: object.kind, name: object.metadata?.name, errors }));
}
process.exit(failed ? 1 : 0);
