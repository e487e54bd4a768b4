"""The CRM exports: the generic rows and the output mapping (criteria), one module per format
(generic, hubspot, hubspot_api, salesforce, mautic), and `leadcal push` (client, push_mautic,
push_hubspot). The exports stage that writes them is pipeline.stages.exports."""
