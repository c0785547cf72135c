fn main() { nice_plug::nice_export_standalone::<backline_plugin::Backline>(); }
